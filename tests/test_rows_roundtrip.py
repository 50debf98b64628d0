"""Configs are the rows: every kind of row turns back into the run that produced it, and training
that run again reproduces the row; adding a configuration field with a default renames no run."""
import glob
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

import cubist.store as store_mod
from cubist.data import DataConfig, Dataset
from cubist.store import ResultStore, canonical_config, run_id
from pruners.runner import Run, SweepConfig, build_runs, load_data, run_chunk
from search import phases
from search.phases import FixedInit, Grid, SearchRun, save_init, search_masks, search_widths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = Grid(lrs=(0.2,), schedules=("cosine",), seeds=2, epochs=3)
OUTCOME = ("run_id", "train_acc", "heldout_acc", "final_loss", "diverged", "weight_nnz", "init_seed")


@pytest.fixture(scope="module")
def tiny():
    d = Dataset.spiral()
    return Dataset(d.X[::25], d.y[::25], d.X_heldout[::50], d.y_heldout[::50], d.id + "-every25", d.recipe)


def _same(a, b):
    import pandas as pd
    for c in OUTCOME:
        assert a[c] == b[c] or (pd.isna(a[c]) and pd.isna(b[c])), (c, a[c], b[c])
    assert a["weights"] == b["weights"]


def _reproduce_search(rows, data, init=None):
    assert rows
    for row in rows:
        run = SearchRun.from_row(row)
        assert run_id(run.to_row(row["dataset_id"])) == row["run_id"]
        _same(run.train(data, init), row)


def test_search_rows_turn_back_into_their_runs(tmp_path, tiny):
    store = ResultStore(str(tmp_path / "s"))
    search_widths(0.99, GRID, store=store, data=tiny, max_width=1, quiet=True, log=lambda *a: None)
    search_masks((2, 1, 2), 0.99, GRID, store=store, data=tiny, max_nnz=9, quiet=True, log=lambda *a: None)
    rows = store.load().to_dict("records")
    kinds = {r["kind"] for r in rows}
    assert kinds == {"search_widths", "search_masks"}
    _reproduce_search(rows, tiny)
    run = SearchRun.from_row(rows[0])
    assert run.init_id is None and run.init_seed == rows[0]["init_seed"]


def test_fixed_init_rows_turn_back_into_their_runs(tmp_path, tiny):
    path = str(tmp_path / "init.pt")
    save_init(path, (2, 16, 16, 16, 1), seed=3)
    init = FixedInit.load(path)
    store = ResultStore(str(tmp_path / "f"))
    search_masks((1, 1, 2), 0.99, GRID, store=store, data=tiny, init=init, symmetry="labelled", max_nnz=7,
                 quiet=True, log=lambda *a: None)
    rows = store.load().to_dict("records")
    assert rows and all(r["init"] == f"checkpoint:{init.id}" for r in rows)
    _reproduce_search(rows, tiny, init)
    with pytest.raises(ValueError, match="give init"):
        SearchRun.from_row(rows[0]).train(tiny)


def test_pruner_rows_turn_back_into_their_runs(tmp_path):
    cfg = SweepConfig(method="gmp", widths=(2, 4, 4, 1), nnz=(12,), lrs=(0.1,), schedules=("step",), seeds=2,
                      epochs=2, subsample=40)
    data = load_data(cfg)
    rows = run_chunk(cfg, build_runs(cfg, data), data, "cpu")
    for row in rows:
        run, one = Run.from_row(row)
        assert run.run_id == row["run_id"] and run_id(run.to_row()) == row["run_id"]
        assert (one.method, one.widths, one.nnz, one.lrs, one.schedules) == ("gmp", (2, 4, 4, 1), (12,), (0.1,),
                                                                           ("step",))
        _same(run_chunk(one, [run], load_data(one), "cpu")[0], row)


def test_a_new_field_with_a_default_keeps_old_run_ids(monkeypatch):
    config = {"kind": "prune", "lr": 0.1, "data": {"heldout": "between", "subsample": 1}}
    old = run_id(config)
    # the fields added so far, at their defaults
    assert run_id({**config, "data": {**config["data"], "name": "spiral", "recipe": {}}}) == old
    assert run_id({**config, "data": {**config["data"], "name": "circles"}}) != old
    # a field added tomorrow
    monkeypatch.setitem(store_mod.OMITTED_AT_DEFAULT, ("warmup_epochs",), 0)
    assert run_id({**config, "warmup_epochs": 0}) == old
    assert run_id({**config, "warmup_epochs": 5}) != old
    assert canonical_config({**config, "warmup_epochs": 0}) == config


@pytest.mark.parametrize("store", ["search_widths", "search_333", "prune"])
def test_committed_rows_keep_their_ids(store):
    """The committed reference stores need no migration: their run ids are what the current code
    computes from their recorded configurations."""
    shards = sorted(glob.glob(os.path.join(ROOT, "results", store, "part-*.parquet")))
    if not shards:
        pytest.skip(f"results/{store} not present")
    rows = pq.read_table(shards[0], columns=["run_id", "config", "dataset_id", "kind"]).to_pylist()[:500]
    for r in rows:
        assert run_id(json.loads(r["config"])) == r["run_id"]
        if r["kind"].startswith("search"):
            assert run_id(SearchRun.from_row(r).to_row(r["dataset_id"])) == r["run_id"]
        else:  # the spiral, on its default recipe
            assert DataConfig.from_row(json.loads(r["config"])["data"]) == DataConfig()
