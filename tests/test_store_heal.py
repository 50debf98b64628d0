"""A store that heals (issue 11): damaged, foreign and stray files are detected, reported,
moved aside or ignored, their runs are trained again by the next resume, and pandas and duckdb
read the shard glob with one row per run; ``cubist store check|repair``; one row per run for
duplicated grids and racing writers; the committed stores load unchanged (read only)."""
import glob
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cubist.cli import main
from cubist.data import Dataset
from cubist.store import (DIGEST_KEY, FORMAT, FORMAT_KEY, QUARANTINE, SCHEMA, STALE_TMP_S, ResultStore, check_shard,
                          content_digest, run_id)
from search import phases
from search.enumerate import count_masks
from search.phases import Grid, search_masks

sys.path.insert(0, os.path.dirname(__file__))
from test_store import sample_row  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
GRID = Grid(lrs=(0.2,), schedules=("constant",), seeds=1, epochs=10)
ORBITS = sum(count_masks((2, 2, 2, 1)).values())     # every orbit of 2-2-2-1, one run each on GRID
SEARCH = Grid(lrs=(0.2, 0.1), schedules=("constant",), seeds=4, epochs=10)   # shards of some size
TOTAL = ORBITS * 8                                   # runs of the search on SEARCH
quiet = dict(quiet=True, log=lambda *a: None)


@pytest.fixture(scope="module")
def tiny():
    d = Dataset.spiral()
    return Dataset(d.X[::20], d.y[::20], d.X_heldout[::40], d.y_heldout[::40], d.id + "-every20", d.recipe)


@pytest.fixture(scope="module")
def searched(tiny, tmp_path_factory):
    """A store of the whole 2-2-2-1 search, a shard per nnz level (copied per test)."""
    path = tmp_path_factory.mktemp("searched") / "s"
    search_masks((2, 2), 0.99, SEARCH, store=ResultStore(path), data=tiny, exhaustive=True, **quiet)
    return path


@pytest.fixture
def store_dir(searched, tmp_path):
    path = tmp_path / "s"
    shutil.copytree(searched, path)
    return path


def shard_names(path):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(path, "part-*.parquet")))


def largest_shard(path):
    return max(glob.glob(os.path.join(path, "part-*.parquet")), key=os.path.getsize)


def assert_readers_see_one_row_per_run(path, n):
    files = sorted(glob.glob(os.path.join(path, "part-*.parquet")))
    df = pd.read_parquet(files)
    assert len(df) == n == df["run_id"].nunique()
    duckdb = pytest.importorskip("duckdb")
    total, distinct = duckdb.sql(f"select count(*), count(distinct run_id) from '{path}/part-*.parquet'").fetchall()[0]
    assert total == distinct == n


def truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:100])


def flip(path):
    data = bytearray(open(path, "rb").read())
    at = len(data) // 3
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    assert at + 40 < footer        # in the data pages, not the footer
    data[at:at + 40] = bytes(b ^ 0xFF for b in data[at:at + 40])
    open(path, "wb").write(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip], ids=["truncated", "flipped"])
def test_damaged_shard_is_quarantined_and_its_runs_redone(tiny, store_dir, damage):
    victim = largest_shard(store_dir)
    assert check_shard(victim).status == "ok"
    lost = set(pq.read_table(victim, columns=["run_id"]).column("run_id").to_pylist())
    damage(victim)
    logs = []
    store = ResultStore(store_dir, log=logs.append)
    assert store.done().isdisjoint(lost) and len(store.done()) == TOTAL - len(lost)
    name = os.path.basename(victim)
    assert len(logs) == 1 and name in logs[0] and "damaged" in logs[0] and "\n" not in logs[0]
    assert not os.path.exists(victim) and os.path.exists(os.path.join(store_dir, QUARANTINE, name))
    # the resume trains exactly the lost runs again
    res = search_masks((2, 2), 0.99, SEARCH, store=ResultStore(store_dir), data=tiny, exhaustive=True, **quiet)
    assert res.trained == len(lost)
    assert ResultStore(store_dir).done() >= lost and len(ResultStore(store_dir).load()) == TOTAL
    assert_readers_see_one_row_per_run(store_dir, TOTAL)
    assert len(pd.read_parquet(store_dir)) == TOTAL      # the directory too: _quarantine is skipped


def test_silently_changed_values_fail_the_checksum(store_dir):
    """A shard whose weights changed but whose file is well-formed (what a flip inside an
    uncompressed page does) is caught by the checksum of its decoded values."""
    victim = largest_shard(store_dir)
    pf = pq.ParquetFile(victim)
    table, meta = pf.read(), pf.schema_arrow.metadata
    weights = table.column("weights").to_pylist()
    weights[1] = bytes([weights[1][0] ^ 1]) + weights[1][1:]
    changed = table.set_column(table.schema.get_field_index("weights"), "weights", pa.array(weights, pa.binary()))
    pq.write_table(changed.replace_schema_metadata(meta), victim, compression="none")
    check = check_shard(victim)
    assert check.status == "damaged" and check.reason == "checksum mismatch"
    logs = []
    store = ResultStore(store_dir, log=logs.append)
    assert len(store.load()) == TOTAL - table.num_rows and "checksum mismatch" in logs[0]


def test_checksum_is_recorded_and_independent_of_layout(tmp_path):
    store = ResultStore(tmp_path / "s")
    rows = [sample_row(i)[0] for i in range(5)]
    rows[2]["weights"] = None                      # nulls, empty and sliced data are hashed alike
    path = store.write(rows)
    meta = pq.read_schema(path).metadata
    assert meta[FORMAT_KEY] == FORMAT.encode() and len(meta[DIGEST_KEY]) == 64
    back = pq.read_table(path).replace_schema_metadata(None)
    assert content_digest(back) == meta[DIGEST_KEY].decode()
    sliced = pa.concat_tables([back.slice(0, 2), back.slice(2)])
    assert content_digest(sliced) == content_digest(back) != content_digest(back.slice(1))
    assert check_shard(path).status == "ok"


def test_foreign_parquet_and_stray_files(store_dir, tmp_path, capsys):
    foreign = store_dir / "part-x.parquet"
    pq.write_table(pa.table({"x1": [0.1, 0.2], "x2": [0.3, 0.4], "label": [0, 1]}), foreign)
    stray = store_dir / "x.parquet"
    pq.write_table(pa.table({"a": [1]}), stray)
    (store_dir / "notes.txt").write_text("my notes\n")
    before = shard_names(store_dir)
    assert main(["store", "check", str(store_dir)]) == 1
    out = capsys.readouterr().out
    assert "foreign: part-x.parquet (no run_id column)" in out and "): notes.txt, x.parquet" in out
    assert shard_names(store_dir) == before and not os.path.exists(store_dir / QUARANTINE)   # check changes nothing
    logs = []
    store = ResultStore(store_dir, log=logs.append)
    assert len(store.load()) == TOTAL and len(logs) == 1 and "part-x.parquet is foreign" in logs[0]
    assert os.path.exists(store_dir / QUARANTINE / "part-x.parquet")
    assert stray.exists() and (store_dir / "notes.txt").exists()        # not shards: ignored, left alone
    assert_readers_see_one_row_per_run(store_dir, TOTAL)
    assert main(["store", "check", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert "ignored (not shards; read the shards with" in out and "quarantined: 1 file" in out and "clean" in out


def test_legacy_shards_load_unverified(tmp_path):
    """A shard written before checksums (no metadata) is accepted as it is."""
    path = tmp_path / "s"
    path.mkdir()
    rows = [sample_row(i)[0] for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path / "part-00000000000000000001-1-abcdef01.parquet")
    logs = []
    store = ResultStore(path, log=logs.append)
    assert len(store.load()) == 3 and not logs
    report = store.check()
    assert report.shards == report.legacy == 1 and not report.problems


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stray_temporaries_of_dead_writers_are_removed(tmp_path, capsys):
    from cubist.store import _HOST
    path = tmp_path / "s"
    ResultStore(path).write([sample_row(0)[0]])
    dead, live = _dead_pid(), os.getpid()
    names = {
        "old": f".part-00000000000000000001-{live}-0a0b0c0d.parquet.tmp",        # before hosts: only by age
        "fresh_old_style": f".part-00000000000000000002-{dead}-0a0b0c0e.parquet.tmp",
        "dead_here": f".part-00000000000000000003-{dead}-0a0b0c0f.parquet.{_HOST}.tmp",
        "live_here": f".part-00000000000000000004-{live}-0a0b0c10.parquet.{_HOST}.tmp",
        "dead_elsewhere": f".part-00000000000000000005-{dead}-0a0b0c11.parquet.otherhost.tmp",
    }
    for name in names.values():
        (path / name).write_bytes(b"PAR1 partial")
    old = time.time() - STALE_TMP_S - 60
    os.utime(path / names["old"], (old, old))
    assert main(["store", "check", str(path)]) == 1            # reports, removes nothing
    out = capsys.readouterr().out
    assert f"stale temporary: {names['old']}" in out and f"stale temporary: {names['dead_here']}" in out
    assert all((path / n).exists() for n in names.values())
    logs = []
    assert len(ResultStore(path, log=logs.append).load()) == 1
    gone = {k for k, n in names.items() if not (path / n).exists()}
    assert gone == {"old", "dead_here"} and len(logs) == 2
    assert len(pd.read_parquet(path)) == 1


def test_write_skips_stored_runs_and_repair_drops_racing_copies(tmp_path, capsys):
    path = tmp_path / "s"
    store = ResultStore(path)
    rows = [sample_row(i)[0] for i in range(4)]
    store.write(rows[:3])
    assert store.write(rows) is not None and store.write(rows) is None
    assert ResultStore(path).write(rows[1:2] + rows[1:2]) is None
    assert len(pd.read_parquet(sorted(glob.glob(f"{path}/part-*.parquet")))) == 4
    # two writers that race both store a run: readers of the glob see both, load() one
    other = ResultStore(path)
    other._write_table(pa.Table.from_pylist(rows[:2], schema=SCHEMA))
    other._write_table(pa.Table.from_pylist(rows[:1], schema=SCHEMA))
    assert len(ResultStore(path).load()) == 4 and len(pd.read_parquet(path)) == 7
    assert main(["store", "check", str(path)]) == 1
    assert "duplicate rows: 3 (of 2 runs stored more than once)" in capsys.readouterr().out
    assert main(["store", "repair", str(path)]) == 0
    out = capsys.readouterr().out
    assert "dropped 3 duplicate rows" in out and "clean: " in out
    assert_readers_see_one_row_per_run(path, 4)
    assert {r["run_id"] for r in rows} == ResultStore(path).done()
    assert main(["store", "check", str(path)]) == 0


def test_repair_quarantines_and_reports(store_dir, capsys):
    victim = largest_shard(store_dir)
    truncate(victim)
    (store_dir / ".part-00000000000000000001-1-0a0b0c0d.parquet.tmp").write_bytes(b"x")
    old = time.time() - STALE_TMP_S - 60
    os.utime(store_dir / ".part-00000000000000000001-1-0a0b0c0d.parquet.tmp", (old, old))
    assert main(["store", "check", str(store_dir)]) == 1
    out = capsys.readouterr().out
    name = os.path.basename(victim)
    assert f"damaged: {name} (unreadable: " in out and "2 problems" in out and os.path.exists(victim)
    assert main(["store", "repair", str(store_dir)]) == 0
    out = capsys.readouterr().out
    assert f"damaged: {name}" in out and f"moved to {QUARANTINE}/" in out and "removed temporary" in out
    assert out.rstrip().splitlines()[-1].startswith("clean: ")
    assert not os.path.exists(victim) and os.listdir(store_dir / QUARANTINE) == [name]
    assert main(["store", "check", str(store_dir)]) == 0


@pytest.mark.parametrize("case", ["missing", "file", "empty", "not_a_store"])
def test_store_command_bad_input(tmp_path, capsys, case):
    target = tmp_path / "t"
    if case == "file":
        target.write_text("x")
    elif case == "empty":
        target.mkdir()
    elif case == "not_a_store":
        target.mkdir()
        (target / "a.txt").write_text("x")
    for action in ("check", "repair"):
        assert main(["store", action, str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cubist: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == (["t"] if case != "missing" else [])
    if case != "missing" and target.is_dir():
        assert os.listdir(target) == ([] if case == "empty" else ["a.txt"])


def test_duplicate_grid_values_train_each_run_once(tiny, tmp_path, monkeypatch):
    doubled = Grid(lrs=(0.2, 0.2), schedules=("constant", "constant"), seeds=1, epochs=10)
    assert doubled == GRID and doubled.points() == [(0.2, "constant", 0)]
    assert Grid(lrs=(0.1, 0.05, 0.1)).lrs == (0.1, 0.05)              # first occurrences, in order
    trained = []
    real = phases.train_chunk

    def counting(chunk, *a, **k):
        trained.extend(run_id(c) for c in chunk.configs)
        return real(chunk, *a, **k)

    monkeypatch.setattr(phases, "train_chunk", counting)
    store = ResultStore(tmp_path / "s")
    res = search_masks((2, 2), 0.99, doubled, store=store, data=tiny, exhaustive=True, **quiet)
    assert res.trained == ORBITS == len(trained) == len(set(trained))
    assert_readers_see_one_row_per_run(store.path, ORBITS)


def test_duplicate_grid_values_prune_each_run_once(tmp_path):
    from pruners.runner import SweepConfig, build_runs, load_data, run_sweep
    cfg = SweepConfig(method="random", nnz=(25, 25), lrs=(0.1, 0.1), schedules=("constant", "constant"), seeds=2,
                      epochs=1, subsample=50, device="cpu")
    assert cfg.nnz == (25,) and cfg.lrs == (0.1,) and cfg.schedules == ("constant",)
    runs = build_runs(cfg, load_data(cfg))
    assert len(runs) == 2 == len({r.run_id for r in runs})
    store = ResultStore(tmp_path / "p")
    assert len(run_sweep(cfg, store=store)) == 2
    assert_readers_see_one_row_per_run(store.path, 2)


def test_cli_flags_with_repeated_values_make_one_grid_point():
    from cubist.cli import build_parser
    from cubist.cli.search import _grid
    argv = ["search", "masks", "--widths", "2,2", "--lrs", "0.1,0.1", "--schedules", "cosine,cosine"]
    grid = _grid(build_parser(argv).parse_args(argv))
    assert grid.lrs == (0.1,) and grid.schedules == ("cosine",) and len(grid.points()) == 1


# -- the committed stores: read only --------------------------------------------------------------
def committed_stores():
    return sorted(p.name for p in (ROOT / "results").iterdir()
                  if p.is_dir() and glob.glob(str(p / "part-*.parquet")))


@pytest.mark.parametrize("name", committed_stores())
def test_committed_stores_load_unchanged(name):
    path = ROOT / "results" / name
    before = sorted(os.listdir(path))
    rows = sum(pq.read_metadata(f).num_rows for f in glob.glob(str(path / "part-*.parquet")))
    logs = []
    store = ResultStore(path, heal=False, log=logs.append)    # never moves or removes a file
    report = store.check()
    # shards written before checksums (legacy) and after both load; a sweep writing into the
    # store meanwhile (a developer's machine) may only add shards
    assert not report.problems and report.rows >= rows
    assert len(store.load()) >= report.runs and not logs
    assert set(before) <= set(os.listdir(path)) and not (path / QUARANTINE).exists()


def test_committed_store_heals_nothing(tmp_path):
    """The default (healing) store on a copy of a committed store: same rows, nothing moved."""
    src = ROOT / "results" / "search_widths"
    if not src.is_dir():
        pytest.skip("no committed results/search_widths")
    copy = tmp_path / "search_widths"
    shutil.copytree(src, copy)
    logs = []
    df = ResultStore(copy, log=logs.append).load()
    assert len(df) == sum(pq.read_metadata(f).num_rows for f in glob.glob(str(src / "part-*.parquet")))
    assert not logs and sorted(os.listdir(copy)) == sorted(os.listdir(src))
    assert np.array_equal(np.sort(df["run_id"].to_numpy()),
                          np.sort(ResultStore(src, heal=False).load(["run_id"])["run_id"].to_numpy()))
