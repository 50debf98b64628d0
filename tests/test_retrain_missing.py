"""results/retrain_missing.py: the reaching pruned runs whose masks nothing has trained from init,
on the hand-made rows of test_method_audit, before and after their search_retrain rows exist."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from handmade import W3, grid_runs, write_store
from test_method_audit import DEAD26, rows

spec = importlib.util.spec_from_file_location("retrain_missing",
                                              Path(__file__).resolve().parents[1] / "results" / "retrain_missing.py")
rm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rm)


def test_lists_the_unmatched_masks_until_their_retrain_rows_exist(tmp_path, capsys):
    base = rows()
    store = write_store(tmp_path / "runs", base)
    dead = next(r["run_id"] for r in base if r["method"] == "lrr" and r["weight_nnz"] == 26 and r["train_acc"] == 0.96)
    assert rm.missing_run_ids([store.path], 0.95) == [dead]      # the one reaching lrr mask never searched
    assert rm.missing_run_ids([store.path], 0.95, ["gmp", "dwf"]) == []
    assert rm.main([store.path]) == 0 and capsys.readouterr().out == dead + "\n"
    retrained = write_store(tmp_path / "retrain", grid_runs("search_retrain", "retrain", W3, DEAD26, 0.05, "cosine",
                                                              3, 0))
    assert rm.missing_run_ids([store.path, retrained.path], 0.95) == []
    assert rm.main([store.path, "--target", "2"]) == 2
    assert "--target must be in (0, 1]" in capsys.readouterr().err
    assert rm.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("retrain_missing: ")
