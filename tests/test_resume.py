"""Resumed pruner sweeps equal uninterrupted ones bit for bit (issue 11, item 7 / defect 12).

The chunks of a sweep are planned from every run of its configuration; a resume trains every
chunk that still has a missing run whole (pruners.runner's module docstring).
"""
from __future__ import annotations

import pytest
import torch

import pruners.runner as runner
from cubist.store import ResultStore
from pruners.runner import SweepConfig, build_runs, load_data, run_sweep, sweep_chunks

# what may differ between two trainings of one run: when and how long
VOLATILE = {"created_at", "wall_time_s"}


def small(**kw) -> SweepConfig:
    base = dict(method="gmp", method_params={"prune_steps": 2}, widths=(2, 4, 4, 1), nnz=(12, 20), lrs=(0.05, 0.2),
                schedules=("cosine", "constant"), seeds=2, epochs=2, subsample=40, chunk=3, device="cpu")
    base.update(kw)
    return SweepConfig(**base)


def rows_by_id(store: ResultStore) -> dict[str, dict]:
    table = store.table()
    ids = table.column("run_id").to_pylist()
    assert len(ids) == len(set(ids)), "a run stored twice"
    return {r["run_id"]: r for r in table.to_pylist()}


def assert_same_rows(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for rid, row in want.items():
        for col, value in row.items():
            if col in VOLATILE:
                continue
            assert got[rid][col] == value, f"run {rid}: {col} differs ({got[rid][col]!r} != {value!r})"


class Interrupted(Exception):
    pass


def interrupt_after(monkeypatch, k: int) -> None:
    """run_chunk raises on its (k+1)-th call: the sweep stops after k chunks."""
    real, calls = runner.run_chunk, [0]

    def chunk(*a, **kw):
        if calls[0] == k:
            raise Interrupted
        calls[0] += 1
        return real(*a, **kw)
    monkeypatch.setattr(runner, "run_chunk", chunk)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cfg = small()
    store = ResultStore(str(tmp_path_factory.mktemp("a")))
    run_sweep(cfg, store=store)
    rows = rows_by_id(store)
    assert len(rows) == len(build_runs(cfg, load_data(cfg))) == 16
    return cfg, rows


def test_several_chunks(reference):
    cfg, _ = reference
    chunks = sweep_chunks(cfg, build_runs(cfg, load_data(cfg)), torch.device("cpu"))
    assert len(chunks) >= 4 and all(len(c) <= 3 for c in chunks)


def test_resume_after_a_stop_equals_the_uninterrupted_sweep(reference, tmp_path, monkeypatch):
    cfg, want = reference
    store = ResultStore(str(tmp_path / "b"))
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        run_sweep(cfg, store=store)
    monkeypatch.undo()
    assert 0 < len(store.done()) < len(want)
    new = run_sweep(cfg, store=ResultStore(store.path))
    assert len(new) == len(want) - 6
    assert_same_rows(rows_by_id(ResultStore(store.path)), want)


def test_resume_with_scattered_stored_runs_equals_the_uninterrupted_sweep(reference, tmp_path, monkeypatch):
    """Every other run stored (so every chunk is partly stored): the resume retrains the chunks
    whole, writes only the missing rows, and they equal the uninterrupted sweep's."""
    cfg, want = reference
    store = ResultStore(str(tmp_path / "b"))
    ids = sorted(want)
    store.write([want[rid] for rid in ids[::2]])
    trained = []
    real = runner.run_chunk

    def chunk(c, runs, *a, **kw):
        trained.append([r.run_id for r in runs])
        return real(c, runs, *a, **kw)
    monkeypatch.setattr(runner, "run_chunk", chunk)
    new = run_sweep(cfg, store=store)
    assert sorted(r["run_id"] for r in new) == sorted(ids[1::2])
    plan = [[r.run_id for r in c] for c in sweep_chunks(cfg, build_runs(cfg, load_data(cfg)), torch.device("cpu"))]
    assert all(c in plan for c in trained)  # only planned chunks, whole
    assert_same_rows(rows_by_id(ResultStore(store.path)), want)


def test_resume_of_a_sub_sweep_equals_the_uninterrupted_sweep(reference, tmp_path):
    """A store that holds one lr's runs (a smaller sweep, chunked its own way) is completed into
    the whole sweep's rows: the stored rows stay, the new ones equal the uninterrupted sweep's."""
    cfg, want = reference
    store = ResultStore(str(tmp_path / "b"))
    run_sweep(small(lrs=(0.2,)), store=store)
    before = rows_by_id(store)
    run_sweep(cfg, store=store)
    got = rows_by_id(ResultStore(store.path))
    assert sorted(got) == sorted(want)
    assert_same_rows({k: v for k, v in got.items() if k not in before}, {k: v for k, v in want.items()
                                                                          if k not in before})


def test_chunk_plan_does_not_depend_on_the_store(reference, tmp_path, monkeypatch):
    """What a resume trains is a subset of the uninterrupted sweep's chunks, whatever is stored."""
    cfg, want = reference
    plan = [[r.run_id for r in c] for c in sweep_chunks(cfg, build_runs(cfg, load_data(cfg)), torch.device("cpu"))]
    assert sorted(rid for c in plan for rid in c) == sorted(want)
    trained = []

    def chunk(c, runs, *a, **kw):
        trained.append([r.run_id for r in runs])
        return [{"run_id": r.run_id} for r in runs]
    monkeypatch.setattr(runner, "run_chunk", chunk)
    ids = sorted(want)
    for i, stored in enumerate((ids[:5], ids[3::4], [plan[1][0]], plan[0] + plan[2])):
        store = ResultStore(str(tmp_path / f"s{i}"))
        store.write([want[rid] for rid in stored])
        trained.clear()
        new = run_sweep(cfg, store=store)
        assert sorted(r["run_id"] for r in new) == sorted(set(ids) - set(stored))
        assert trained == [c for c in plan if set(c) - set(stored)]


@pytest.mark.slow
def test_resume_with_workers_equals_the_uninterrupted_sweep(tmp_path):
    """jobs=2 (loky workers): the plan is cut for two workers from all runs, on resume too."""
    cfg = small(chunk=0)
    a = ResultStore(str(tmp_path / "a"))
    run_sweep(cfg, store=a, jobs=2, threads=1)
    want = rows_by_id(a)
    b = ResultStore(str(tmp_path / "b"))
    ids = sorted(want)
    b.write([want[rid] for rid in ids[:3]])
    run_sweep(cfg, store=b, jobs=2, threads=1)
    assert_same_rows(rows_by_id(ResultStore(b.path)), want)


# -- two sweeps into one store (issue 11, item 3) -------------------------------------------------
SWEEP = """
import json, os, sys, time
import pruners.runner as runner
from pruners.runner import SweepConfig, run_sweep
trained, real = [], runner.run_chunk
def run_chunk(cfg, runs, *a, **kw):
    trained.extend(r.run_id for r in runs)
    return real(cfg, runs, *a, **kw)
runner.run_chunk = run_chunk
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
cfg = SweepConfig(method="gmp", method_params={"prune_steps": 2}, widths=(2, 4, 4, 1), nnz=(12, 20),
                  lrs=(0.05, 0.2), schedules=("cosine", "constant"), seeds=2, epochs=%d, subsample=40, chunk=2,
                  device="cpu")
rows = run_sweep(cfg, store=sys.argv[1], threads=1)
print(json.dumps({"rows": [r["run_id"] for r in rows], "trained": trained}))
"""


def test_two_sweeps_at_once_train_every_run_once(tmp_path):
    import json
    import subprocess
    import sys
    out, go = str(tmp_path / "store"), tmp_path / "go"
    code = SWEEP % 6
    procs = [subprocess.Popen([sys.executable, "-c", code, out, str(go)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    go.touch()
    got = []
    for p in procs:
        stdout, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        got.append(json.loads(stdout.strip().splitlines()[-1]))
    cfg = small(epochs=6, chunk=2)
    ids = {r.run_id for r in build_runs(cfg, load_data(cfg))}
    trained = [g["trained"] for g in got]
    assert len(trained[0]) + len(trained[1]) == len(ids)   # every run trained once: by one sweep ...
    assert set(trained[0]) | set(trained[1]) == ids
    rows = [g["rows"] for g in got]
    assert sorted(rows[0] + rows[1]) == sorted(ids)        # ... which returned it: nothing lost
    table = ResultStore(out).table(["run_id"])
    assert sorted(table.column("run_id").to_pylist()) == sorted(ids)  # one row per run
    assert not list((tmp_path / "store" / "_claims").iterdir())      # every claim released


HOLD = """
import sys, time
from cubist.store import ResultStore
claim = ResultStore(sys.argv[1]).claim("k")
print("held" if claim else "busy", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_claim_excludes_others_until_released_or_its_holder_dies(tmp_path):
    import signal
    import subprocess
    import sys
    store = ResultStore(str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, store.path, "60"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert store.claim("k") is None                     # a live holder excludes
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    claim = store.claim("k")                            # a dead holder's claim is gone at once
    assert claim is not None
    other = subprocess.run([sys.executable, "-c", HOLD, store.path, "0"], capture_output=True, text=True, timeout=60)
    assert other.stdout.strip() == "busy"               # and ours excludes another process
    claim.release()
    again = store.claim("k", wait=True)
    assert again is not None and store.claim("k") is None  # two claims in one process exclude too
    again.release()
    assert store.check().stray == []                    # the claims folder is the store's own


# -- two search sweeps into one store (issue 11, remaining item 2) --------------------------------
SEARCH_SWEEP = """
import json, os, sys, time
from cubist.store import run_id
from search import phases
trained, real = [], phases.train_chunk
def train_chunk(chunk, *a, **kw):   # the runs this process trains itself (with --jobs 1)
    trained.extend(run_id(c) for c in chunk.configs)
    return real(chunk, *a, **kw)
phases.train_chunk = train_chunk
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
from cubist.cli import main
code = main(["search", "masks", "--widths", "3,3", "--data", "circles", "--exhaustive", "--epochs", "3",
             "--lrs", "0.05,0.1", "--schedules", "cosine", "--chunk-size", "4", "--jobs", sys.argv[3], "--quiet",
             "--out", sys.argv[1]])
print(json.dumps({"code": code, "trained": trained}))
"""


@pytest.mark.parametrize("jobs", [1, 2])
def test_two_search_sweeps_at_once_train_every_run_once(tmp_path, jobs):
    """Two identical `cubist search masks` into one --out at once: every run trained by one of
    them (the `trained N runs` lines add up to the runs, not twice), one row per run, and both
    report the same complete search (each reads back what the other stored)."""
    import json
    import re
    import subprocess
    import sys
    from cubist.data import DataConfig
    from search.enumerate import count_masks
    out, go = str(tmp_path / "store"), tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", SEARCH_SWEEP, out, str(go), str(jobs)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()
    outputs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-2000:]
        outputs.append(stdout.strip().splitlines())
    runs = 2 * sum(count_masks((DataConfig("circles").build().X.shape[1], 3, 3, 1), symmetry="orbits").values())
    at = [next(i for i, ln in enumerate(lines) if ln.startswith("trained ")) for lines in outputs]
    said = [int(re.match(r"trained (\d+) runs", lines[i]).group(1)) for lines, i in zip(outputs, at)]
    assert sum(said) == runs                                           # every run trained once, by one sweep
    if jobs == 1:
        trained = [json.loads(lines[-1])["trained"] for lines in outputs]
        assert len(trained[0]) + len(trained[1]) == runs == len(set(trained[0]) | set(trained[1]))
        assert [len(t) for t in trained] == said
    levels = [[ln for ln in lines if ln.startswith("nnz ")] for lines in outputs]
    assert levels[0] == levels[1] and len(levels[0]) > 3               # the same levels, each whole in both
    assert outputs[0][at[0] + 1] == outputs[1][at[1] + 1]              # and the same summary
    ids = ResultStore(out).table(["run_id"]).column("run_id").to_pylist()
    assert len(ids) == len(set(ids)) == runs                           # one row per run, none lost
    assert not list((tmp_path / "store" / "_claims").iterdir())        # every claim released
