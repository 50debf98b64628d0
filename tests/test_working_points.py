"""The working-point rule of a hyper-parameter sweep (results/run_hparams.sh): cubist.report.tables.
working_points and results/working_points.py, against hand-ranked settings on hand-made rows."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from cubist.report import tables as A
from cubist.stats import wilson_interval

from handmade import W16, random_mask, row, write_store

T = 0.95


def sweep_rows():
    """Settings with hand-counted successes: each run list is (train_acc, diverged)."""
    out = []

    def setting(method, params, accs, epochs_trained=None):
        for i, (acc, div) in enumerate(accs):
            r = row("prune", method, W16, random_mask(W16, 20, i), acc, seed=i, target_nnz=20 + 10 * (i % 2),
                    diverged=div, params={"method": method, **params}, keep_weights=False)
            if epochs_trained is not None:
                r["metrics"] = json.dumps({"epochs_trained": epochs_trained})
            out.append(r)

    ok, no, low = (0.96, False), (0.90, False), (0.40, False)
    # DWF, one working point per depth: depth 2 -> 1e-3 (2 successes); depth 3 -> 1e-4 (no successes, higher
    # mean accuracy)
    setting("dwf", {"dwf_depth": 2, "dwf_lambda": 1e-4}, [ok, no, no])
    setting("dwf", {"dwf_depth": 2, "dwf_lambda": 1e-3}, [ok, ok, no])
    setting("dwf", {"dwf_depth": 3, "dwf_lambda": 1e-4}, [no, no, no])
    setting("dwf", {"dwf_depth": 3, "dwf_lambda": 1e-3}, [no, no, low])
    # PILoT: three settings tie on successes and accuracy -> the smaller alpha0, then the larger K
    for a, k in ((1e-5, 0.5), (1e-5, 0.25), (1e-6, 0.25)):
        setting("pilot", {"pilot_alpha0": a, "pilot_k": k}, [ok, no])
    # LRR: a diverged run counts 0.5, so cycles 8 (0.96, diverged at a stale 0.99: mean 0.73) ranks below
    # cycles 3 (0.96, 0.60: mean 0.78); cycles 2 ties cycles 5 on both and trains fewer epochs
    setting("lrr", {"cycles": 8, "rate": 0.2}, [ok, (0.99, True)], 450)
    setting("lrr", {"cycles": 3, "rate": 0.2}, [ok, (0.60, False)], 200)
    setting("lrr", {"cycles": 5, "rate": 0.2}, [ok, no], 300)
    setting("lrr", {"cycles": 2, "rate": 0.2}, [ok, no], 150)
    return out


def test_working_points_rule():
    t = A.working_points(A.normalised(pd.DataFrame(sweep_rows())), T)
    chosen = t[t["chosen"]]
    assert list(chosen["flags"]) == ["--method dwf --dwf-depth 2 --dwf-lambda 0.001",
                                     "--method dwf --dwf-depth 3 --dwf-lambda 0.0001",
                                     "--method lrr --cycles 2 --rate 0.2",
                                     "--method pilot --pilot-alpha0 1e-06 --pilot-k 0.25"]
    assert list(chosen["successes"]) == [2, 0, 1, 1] and list(chosen["runs"]) == [3, 3, 2, 2]
    assert list(chosen["group"]) == ["--dwf-depth 2", "--dwf-depth 3", "", ""]
    lrr = t[t["method"] == "lrr"]
    assert list(lrr["flags"]) == [f"--method lrr --cycles {c} --rate 0.2" for c in (2, 5, 3, 8)]
    assert list(lrr["epochs"]) == [150, 300, 200, 450]
    assert lrr.iloc[3]["mean_acc"] == pytest.approx((0.96 + 0.5) / 2)
    assert lrr.iloc[3]["best_acc"] == pytest.approx(0.96)   # a diverged run's accuracy is no best
    pilot = t[t["method"] == "pilot"]
    assert list(pilot["flags"]) == ["--method pilot --pilot-alpha0 1e-06 --pilot-k 0.25",
                                    "--method pilot --pilot-alpha0 1e-05 --pilot-k 0.5",
                                    "--method pilot --pilot-alpha0 1e-05 --pilot-k 0.25"]
    assert list(pilot["rank"]) == [1, 2, 3]
    low, high = wilson_interval(2, 3, 0.95)
    d2 = chosen.iloc[0]
    assert (d2["budgets"], d2["rate"]) == (2, pytest.approx(2 / 3))
    assert (d2["low"], d2["high"]) == (pytest.approx(low), pytest.approx(high))


def test_working_points_script(tmp_path, capsys):
    import importlib.util
    import pathlib
    store = write_store(tmp_path / "hp", sweep_rows())
    path = pathlib.Path(__file__).resolve().parents[1] / "results" / "working_points.py"
    spec = importlib.util.spec_from_file_location("working_points", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([store.path]) == 0
    text = capsys.readouterr().out
    tail = text.split("working points (target 0.95):")[1]
    assert [line.split("#")[0].strip() for line in tail.strip().splitlines()] == [
        "--method dwf --dwf-depth 2 --dwf-lambda 0.001", "--method dwf --dwf-depth 3 --dwf-lambda 0.0001",
        "--method lrr --cycles 2 --rate 0.2", "--method pilot --pilot-alpha0 1e-06 --pilot-k 0.25"]
    assert "2/3 = 0.67 [" in text
    assert mod.main([str(tmp_path / "missing")]) == 2
