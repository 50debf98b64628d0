"""The same library calls on a Dask cluster (joblib's dask backend) give the same rows."""
import numpy as np
import pytest

import cubist
from cubist.data import Dataset
from search.phases import Grid, search_masks

distributed = pytest.importorskip("distributed")
from joblib import parallel_config  # noqa: E402

GRID = Grid(lrs=(0.2,), schedules=("constant",), seeds=1, epochs=2)


@pytest.fixture(scope="module")
def tiny():
    d = Dataset.spiral()
    return Dataset(d.X[::25], d.y[::25], d.X_heldout[::50], d.y_heldout[::50], d.id + "-every25", d.recipe)


@pytest.fixture(scope="module")
def client():
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        yield c


def _acc(store):
    df = store.load(["train_acc", "final_loss"])
    return dict(zip(df["run_id"], zip(df["train_acc"], df["final_loss"])))


def test_search_on_dask_equals_in_process(tiny, tmp_path, client):
    local = cubist.ResultStore(tmp_path / "local")
    search_masks((2, 2), 0.99, GRID, store=local, data=tiny, exhaustive=True, chunk_size=8, quiet=True,
                 log=lambda *a: None)
    remote = cubist.ResultStore(tmp_path / "dask")
    with parallel_config(backend="dask"):
        res = search_masks((2, 2), 0.99, GRID, store=remote, data=tiny, exhaustive=True, chunk_size=8, jobs=2,
                           quiet=True, log=lambda *a: None)
    assert res.trained == len(local.done()) > 8
    a, b = _acc(local), _acc(remote)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][0] == b[k][0] and np.isclose(a[k][1], b[k][1], rtol=1e-6)


def test_prune_sweep_on_dask_equals_in_process(tmp_path, client):
    from pruners.runner import SweepConfig, run_sweep
    cfg = SweepConfig(method="gmp", widths=(2, 4, 4, 1), nnz=(10, 14), lrs=(0.1,), schedules=("cosine",),
                      seeds=2, epochs=1, device="cpu")
    local = cubist.ResultStore(tmp_path / "local")
    run_sweep(cfg, store=local, threads=1)
    remote = cubist.ResultStore(tmp_path / "dask")
    with parallel_config(backend="dask"):
        run_sweep(cfg, store=remote, threads=1, jobs=2)
    a, b = _acc(local), _acc(remote)
    assert len(a) == 4 and a.keys() == b.keys()
    for k in a:
        assert abs(a[k][0] - b[k][0]) <= 2 / 49982 and np.isclose(a[k][1], b[k][1], rtol=1e-4)
