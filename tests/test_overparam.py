"""The over-parameterisation matrix (results/overparam.py, results/run_overparam.sh; issue 12, item 2):
budgets below the weight count, chunk sizes, the reduced grid's rule, its source and its freezing, the plan
turned back into a sweep, and chunking at width 64 leaving every run's bits unchanged."""
import importlib.util
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

from cubist.masks import dense_weight_count
from pruners.runner import SweepConfig, build_runs, load_data, run_sweep, sweep_chunks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("overparam", os.path.join(ROOT, "results", "overparam.py"))
op = importlib.util.module_from_spec(_spec)
sys.modules["overparam"] = op   # its dataclass looks its module up
_spec.loader.exec_module(op)


def test_budgets_drop_those_at_or_above_the_weight_count():
    assert dense_weight_count(op.widths_of(3)) == 27 and dense_weight_count(op.widths_of(4)) == 44
    assert op.budgets(3) == list(range(15, 27))
    assert op.budgets(4) == [*range(15, 27), 30, 33, 37, 40]        # 44 is the dense network: dropped
    assert op.budgets(5) == [*range(15, 27), 30, 33, 37, 40, 44, 50, 53, 55, 57, 60]  # 65 of 65 dropped
    for w in op.WIDTHS:
        total = dense_weight_count(op.widths_of(w))
        assert op.budgets(w) == [f for f in op.BUDGETS if f < total]
    assert all(op.budgets(w) == list(op.BUDGETS) for w in op.WIDTHS if w >= 6)
    assert len(op.BUDGETS) == 23 and op.budgets(3, (10, 26, 27, 28)) == [10, 26]


def test_chunks_stay_within_the_width_cap_and_balance_the_workers():
    assert [op.max_chunk(w) for w in (3, 16, 32, 64, 128, 256)] == [256, 256, 256, 256, 128, 32]
    data = load_data(SweepConfig(subsample=50))
    for w in op.WIDTHS:
        for grid in (9, 1):
            n = len(op.budgets(w)) * grid * 3
            c = op.chunk_size(n, w, 2)
            assert c <= op.max_chunk(w)
            cfg = SweepConfig(widths=op.widths_of(w), nnz=op.budgets(w), lrs=op.LRS[:1 if grid == 1 else 3],
                              schedules=op.SCHEDULES[:1 if grid == 1 else 3], seeds=3, chunk=c, subsample=50)
            chunks = sweep_chunks(cfg, build_runs(cfg, data), __import__("torch").device("cpu"), jobs=2)
            assert sum(map(len, chunks)) == n and max(map(len, chunks)) <= c
            assert len(chunks) % 2 == 0, (w, grid, c, [len(x) for x in chunks])


def _rows(points):
    rows = []
    for (lr, s), accs in points.items():
        rows += [{"lr": lr, "schedule": s, "train_acc": a, "diverged": a is None} for a in accs]
    return pd.DataFrame(rows)


def test_best_grid_point_rule():
    # most runs reaching 95% wins, even against a higher mean
    df = _rows({(0.05, "cosine"): [0.96, 0.5, 0.5], (0.1, "step"): [0.94, 0.94, 0.94],
                (0.2, "constant"): [0.951, 0.952, 0.6]})
    assert op.best_grid_point(df)["lr"] == 0.2 and op.best_grid_point(df)["reached"] == 2
    # none reaches: the highest mean train accuracy (a diverged run counts 0)
    df = _rows({(0.05, "cosine"): [0.9, 0.9], (0.2, "step"): [0.94, None], (0.1, "constant"): [0.8, 0.85]})
    best = op.best_grid_point(df)
    assert (best["lr"], best["schedule"], best["reached"]) == (0.05, "cosine", 0)
    # a full tie: the first in the grid order (lr, then schedule)
    df = _rows({(0.2, "cosine"): [0.9], (0.1, "constant"): [0.9], (0.1, "step"): [0.9]})
    assert (op.best_grid_point(df)["lr"], op.best_grid_point(df)["schedule"]) == (0.1, "step")


def test_reduced_grid_is_chosen_from_the_source_then_frozen(tmp_path, monkeypatch, one_thread):
    out, src = str(tmp_path / "op"), str(tmp_path / "src")
    real = op.sweep_config

    def tiny(width, variant, lrs=op.LRS, schedules=op.SCHEDULES, seeds=3, nnz=None):  # a quick stand-in sweep
        return SweepConfig(method="gmp", widths=(2, 3, 3, 3, 1), nnz=nnz or (20, 25), lrs=lrs, schedules=schedules,
                           seeds=seeds, epochs=1, subsample=50, device="cpu", method_params={"prune_steps": 2})
    monkeypatch.setattr(op, "sweep_config", tiny)
    source = op.GridSource(src, width=32, nnz=(20, 25), seeds=1)
    with pytest.raises(SystemExit, match="has 0 of its 18 runs"):
        op.reduced_grid(out, "gmp", source)
    rows = run_sweep(tiny(32, "gmp", seeds=1), store=src)
    run_sweep(tiny(32, "gmp", lrs=(0.3,), schedules=("cosine",), seeds=1),
              store=src)   # a run of the source store outside the source sweep: not counted
    point = op.reduced_grid(out, "gmp", source)
    want = op.best_grid_point(pd.DataFrame(rows))
    assert {k: point[k] for k in want} == want and want["runs"] == 2
    assert (point["from_width"], point["from_nnz"], point["from_seeds"]) == (32, [20, 25], 1)
    frozen = json.load(open(os.path.join(out, op.GRID_FILE)))
    assert frozen == {"gmp": point}
    # frozen: later rows of the source do not change the choice
    for f in os.listdir(src):
        if f.startswith("part-"):
            os.remove(os.path.join(src, f))
    assert op.reduced_grid(out, "gmp", source) == point
    with pytest.raises(SystemExit, match="froze gmp's grid point"):   # one store, one design
        op.reduced_grid(out, "gmp", op.GridSource(src, width=16, nnz=(20, 25), seeds=1))
    monkeypatch.setattr(op, "sweep_config", real)
    args = op.plan(64, "gmp", out, seeds=1, jobs=2, source=source)
    assert args[args.index("--lrs") + 1] == f"{point['lr']:g}"
    assert args[args.index("--schedules") + 1] == point["schedule"]
    # up to full_max the paper's whole grid, whatever is frozen
    args = op.plan(16, "gmp", out, seeds=1, jobs=2, full_max=32, source=source)
    assert args[args.index("--lrs") + 1] == "0.05,0.1,0.2" and args[args.index("--schedules") + 1] == "cosine,step,constant"


def test_default_grid_is_the_reference_sweeps_best_point_at_width_16(tmp_path):
    """By default every width gets one grid point per variant, chosen from the committed reference
    sweep (results/prune at width 16, budgets 15..65, full grid, 3 inits): every run of it counted."""
    from cubist.store import ResultStore
    out = str(tmp_path / "op")
    args = op.plan(3, "gmp", out, seeds=3, jobs=2)
    point = json.load(open(os.path.join(out, op.GRID_FILE)))["gmp"]
    assert (point["from_store"], point["from_width"], point["from_nnz"]) == ("results/prune", 16, [15, 20, 25, 30, 40, 50, 65])
    assert point["runs"] == 21   # 7 budgets x 3 inits at the chosen point
    cfg = op.sweep_config(16, "gmp", nnz=op.REFERENCE_SOURCE.nnz)
    want = {r.run_id for r in build_runs(cfg, load_data(cfg))}
    assert len(want) == 7 * 9 * 3
    df = ResultStore(op.REFERENCE_SOURCE.store).load(["lr", "schedule", "train_acc", "diverged"])
    df = df[df["run_id"].isin(want)]
    assert len(df) == len(want)
    best = op.best_grid_point(df)
    assert {k: point[k] for k in best} == best
    assert args[args.index("--lrs") + 1] == f"{best['lr']:g}" and args[args.index("--schedules") + 1] == best["schedule"]
    assert args[args.index("--nnz") + 1] == ",".join(map(str, range(15, 27)))
    assert args[args.index("--chunk") + 1] == str(op.chunk_size(12 * 3, 3, 2))


def test_grid_source_defaults_per_variant(tmp_path):
    """A reference variant's reduced grid comes from results/prune, a working point's from the
    hyper-parameter sweep it was chosen in; a field given replaces the default's, and a store of
    no known source has the matrix's own budgets."""
    assert op.grid_source("gmp") == op.REFERENCE_SOURCE
    hp = op.grid_source("pilot-k0.75")
    assert hp == op.SOURCES["pilot-k0.75"] and hp.store.endswith(os.path.join("results", "hparams"))
    assert (hp.width, hp.nnz, hp.seeds) == (16, (20, 30, 50), 3)
    assert op.grid_source("pilot-k0.75", store=op.REFERENCE_SOURCE.store).nnz == op.REFERENCE_SOURCE.nnz
    other = op.grid_source("gmp", store=str(tmp_path), width=32, seeds=1)
    assert (other.width, other.nnz, other.seeds) == (32, None, 1)
    assert op.grid_source("gmp", nnz=(20,)).nnz == (20,)


def test_working_point_grid_is_its_hparams_sweeps_best_point(tmp_path):
    """PILoT at K 0.75 on the matrix: the plan passes the K, and its grid point is the best of the
    81 K-0.75 runs of results/hparams (found here by their recorded parameters, not by run id)."""
    from cubist.report.tables import load_results
    if not os.path.isdir(os.path.join(ROOT, "results", "hparams")):
        pytest.skip("results/hparams not present")
    out = str(tmp_path / "op")
    args = op.plan(7, "pilot-k0.75", out)
    assert " ".join(args).startswith("--method pilot --pilot-k 0.75 --width 7 ")
    point = json.load(open(os.path.join(out, op.GRID_FILE)))["pilot-k0.75"]
    assert (point["from_store"], point["from_nnz"], point["runs"]) == ("results/hparams", [20, 30, 50], 9)
    df = load_results([os.path.join(ROOT, "results", "hparams")])
    params = df["params"].map(json.loads)
    k75 = df[(df["method"] == "pilot") & params.map(lambda p: p.get("pilot_k") == 0.75 and p.get("pilot_alpha0") == 1e-5)]
    assert len(k75) == 81 and set(k75["target_nnz"]) == {20, 30, 50}
    best = op.best_grid_point(k75)
    assert {k: point[k] for k in best} == best
    assert args[args.index("--lrs") + 1] == f"{best['lr']:g}" and args[args.index("--schedules") + 1] == best["schedule"]
    assert op.main(["plan", "7", "bogus", "--out", out]) == 2

def test_cli_sources(tmp_path, capsys):
    out = str(tmp_path / "op")
    assert op.main(["plan", "3", "gmp", "--out", out, "--full-grid-max-width", "8"]) == 0
    assert "--lrs 0.05,0.1,0.2 --schedules cosine,step,constant" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(out, op.GRID_FILE))   # the full grid needs no source
    with pytest.raises(SystemExit, match="the grid source .width 32 of gmp in .*has 0 of its 621 runs"):
        op.main(["plan", "3", "gmp", "--out", out, "--grid-from", out, "--grid-width", "32"])
    with pytest.raises(SystemExit, match=r"has \d+ of its 189 runs"):   # the reference's 7 budgets at width 32
        op.main(["plan", "3", "gmp", "--out", out, "--grid-from", op.REFERENCE_SOURCE.store, "--grid-width", "32"])


def test_plan_is_a_cubist_prune_command(tmp_path):
    from cubist.cli import build_parser
    from cubist.cli.prune import sweep_config_from_args
    args = op.plan(16, "imp-wr", str(tmp_path / "op"), seeds=3, jobs=2, full_max=32)   # the paper's grid
    cfg = sweep_config_from_args(build_parser(["prune", *args]).parse_args(["prune", *args]))
    assert cfg.widths == (2, 16, 16, 16, 1) and list(cfg.nnz) == op.budgets(16)
    assert cfg.lrs == op.LRS and cfg.schedules == op.SCHEDULES and cfg.seeds == 3
    assert cfg.method == "imp" and cfg.method_params == {"rewind": "step", "rewind_step": 390, "cycles": 5}
    assert cfg.chunk == op.chunk_size(23 * 9 * 3, 16, 2) == 156
    assert op.sweep_config(16, "imp-wr") == sweep_config_from_args(
        build_parser(["prune", *args]).parse_args(["prune", *args[:args.index("--chunk")], "--out", "x"]))
    for variant in op.METHODS:   # every variant's flags parse
        op.sweep_config(3, variant, seeds=1)
    with pytest.raises(SystemExit, match="width 32 of gmp"):
        op.plan(64, "gmp", str(tmp_path / "empty"), seeds=1, source=op.GridSource(str(tmp_path / "empty"), 32, None))


@pytest.mark.parametrize("method,params", [("gmp", {"prune_steps": 3}), ("lrr", {"cycles": 2})])
def test_width_64_runs_are_bit_identical_in_any_chunk(method, params, one_thread):
    """Replicas share no arithmetic: a width-64 run's row is the same bits in a chunk of 4 runs as
    in chunks of 2 (on data small enough that the final evaluation is one chunk at both sizes).
    Not so against a chunk of ONE replica: there the output bias's gradient (a sum over a batch
    of ``(1, B, 1)``) is reduced in another order, and its last bits differ."""
    cfg = dict(method=method, widths=(2, 64, 64, 64, 1), nnz=(20, 200), lrs=(0.1, 0.2), schedules=("cosine",),
               seeds=1, epochs=1, subsample=50, device="cpu", method_params=params)
    together = run_sweep(SweepConfig(**cfg, chunk=4))
    pairs = run_sweep(SweepConfig(**cfg, chunk=2))
    assert {json.loads(r["metrics"])["chunk_size"] for r in together} == {4}
    assert {json.loads(r["metrics"])["chunk_size"] for r in pairs} == {2}
    by_id = {r["run_id"]: r for r in pairs}
    assert len(together) == len(pairs) == 4
    for a in together:
        b = by_id[a["run_id"]]
        for k in ("train_acc", "heldout_acc", "final_loss", "weight_nnz", "mask_bits", "weights"):
            assert a[k] == b[k], k
        assert np.frombuffer(a["weights"], "<f4").size == dense_weight_count(cfg["widths"]) + 3 * 64 + 1


def test_summary_of_hand_made_rows():
    """Per width: each variant's fewest budget with a run reaching 95% (a diverged run does not
    count), the reaching runs of those at that budget, the fewest effective weights among them
    when below the budget, the variants never reaching, and which variants are complete."""
    def row(width, method, nnz, acc, eff=None, diverged=False):
        return {"widths": (2, width, width, width, 1), "method": method, "target_nnz": float(nnz),
                "train_acc": acc, "diverged": diverged, "effective_nnz": float(eff if eff is not None else nnz)}
    rows = [row(3, "gmp", f, 0.5) for f in op.budgets(3) for _ in range(3)]          # complete, never
    rows += [row(3, "lrr", 20, 0.96, 18), row(3, "lrr", 20, 0.97, 19), row(3, "lrr", 20, 0.4),
             row(3, "lrr", 22, 0.99), row(3, "lrr", 19, 0.99, diverged=True), row(3, "lrr", 18, 0.949)]
    rows += [row(4, "imp", 40, 0.95), row(4, "gmp", 40, 0.951), row(4, "gmp", 40, 0.2)]
    got = op.summary(pd.DataFrame(rows))
    assert [r["width"] for r in got] == [3, 4]
    w3, w4 = got
    assert (w3["runs"], w3["variants"], w3["complete"], w3["never"]) == (36 + 6, 2, 1, ["gmp"])
    assert w3["reaching"] == [{"variant": "lrr", "budget": 20, "reached": 2, "runs": 3, "effective": 18}]
    # same budget: the variants' order of METHODS (gmp before imp); neither complete
    assert [(r["variant"], r["reached"], r["runs"]) for r in w4["reaching"]] == [("gmp", 1, 2), ("imp", 1, 1)]
    assert w4["complete"] == 0 and w4["never"] == []
    md = op.summary_markdown(got).splitlines()
    assert md[2] == "| 3 | 42 | 2 (1) | lrr 20 (2/3; effective 18) | gmp |"
    assert md[3] == "| 4 | 3 | 2 (0) | gmp 40 (1/2), imp 40 (1/1) | none |"


def test_summary_cli(tmp_path, capsys):
    assert op.main(["summary", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.strip() == f"overparam: no store at {tmp_path / 'absent'}"
