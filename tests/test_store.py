import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.dataset as ds
import pytest

import cubist
from cubist.model import run_init_seed
from cubist.store import COLUMNS, SCHEMA, ResultStore, StoreWriter, make_row, row_masks, row_weights


def sample_row(i=0, **over):
    rng = np.random.default_rng(i)
    widths = (2, 3, 4, 1)
    masks = [rng.random((widths[l + 1], widths[l])) < 0.6 for l in range(3)]
    weights = [(rng.standard_normal(m.shape).astype(np.float32) * m, rng.standard_normal(m.shape[0]).astype(np.float32))
               for m in masks]
    config = dict(kind="prune", method="gmp", widths=widths, init_width=16, init="random",
                  init_seed=run_init_seed("prune", i), lr=0.1, schedule="cosine", epochs=50,
                  batch_size=128, momentum=0.9, weight_decay=5e-4, seed=i, target_nnz=10,
                  params={"prune_steps": 200}, dataset_id="abc")
    config.update(over)
    metrics = dict(train_acc=0.9 + i * 1e-3, heldout_acc=0.8, final_loss=0.1, diverged=False,
                   **cubist.mask_counts(masks))
    return make_row(config, masks=masks, weights=weights, metrics=metrics, extra={"natural_nnz": 7},
                    engine="test", wall_time_s=1.5), masks, weights


def test_round_trip_every_column(tmp_path):
    store = ResultStore(tmp_path / "s")
    row, masks, weights = sample_row(3)
    store.write([row])
    df = store.load()
    assert list(df.columns) == list(COLUMNS) and len(df) == 1
    got = df.iloc[0]
    for col in COLUMNS:
        if col in ("widths", "mask_shapes"):
            assert [list(x) if hasattr(x, "__len__") else x for x in got[col]] == \
                   [list(x) if hasattr(x, "__len__") else x for x in row[col]]
        elif col == "created_at":
            assert got[col].to_pydatetime() == row[col]
        else:
            assert got[col] == row[col], col
    assert all(np.array_equal(a, b) for a, b in zip(row_masks(got), masks))
    for (w, b), (w2, b2) in zip(row_weights(got), weights):
        assert np.array_equal(w, w2) and np.array_equal(b, b2)
    assert got["version"] == cubist.__version__ and len(got["run_id"]) == 16


def test_run_id_is_content_hash():
    a, _, _ = sample_row(1)
    b, _, _ = sample_row(1)
    c, _, _ = sample_row(1, lr=0.05)
    assert a["run_id"] == b["run_id"] != c["run_id"]


def test_readers_and_resume(tmp_path):
    store = ResultStore(tmp_path / "s")
    rows = [sample_row(i)[0] for i in range(6)]
    with StoreWriter(store, flush_every=4) as w:
        for r in rows:
            w.add(r)
    assert len(store.shards()) == 2
    assert store.done() == {r["run_id"] for r in rows}
    # rerun: only missing runs would be trained, and rows already stored are not written again
    assert store.write(rows[:2]) is None and len(pd.read_parquet(store.path)) == 6
    # two writers racing on the same runs can both store them: load keeps one per run
    store._write_table(pa.Table.from_pylist(rows[:2], schema=SCHEMA))
    assert len(store.load()) == 6
    assert len(pd.read_parquet(store.path)) == 8
    assert ds.dataset(store.path, format="parquet").count_rows() == 8
    duckdb = pytest.importorskip("duckdb")
    n = duckdb.sql(f"select count(distinct run_id) from read_parquet('{store.path}/*.parquet')").fetchall()[0][0]
    assert n == 6
    store._write_table(pa.Table.from_pylist(rows[:3], schema=SCHEMA))
    store.compact(max_rows=4)                       # small shards: 4 + 2 rows, one per run
    assert sorted(len(pq.read_table(p)) for p in store.shards()) == [2, 4]
    assert len(pd.read_parquet(store.path)) == 6 and store.done() == {r["run_id"] for r in rows}
    store.compact()
    assert len(store.shards()) == 1 and len(pd.read_parquet(store.path)) == 6


def test_empty_store(tmp_path):
    store = ResultStore(tmp_path / "none")
    assert store.done() == set() and len(store.load()) == 0


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import pyarrow.parquet as pq
    from cubist.store import ResultStore
    sys.path.insert(0, {tests!r})
    from test_store import sample_row
    real = pq.write_table
    def slow(table, where, **kw):
        real(table, where, **kw)
        print("written", flush=True)
        time.sleep(60)  # killed here: the shard exists only under its temporary name
    pq.write_table = slow
    ResultStore({path!r}).write([sample_row(0)[0]])
""")


def test_killed_writer_leaves_no_visible_shard(tmp_path):
    path = str(tmp_path / "s")
    ResultStore(path).write([sample_row(1)[0]])
    code = KILLED_WRITER.format(tests=os.path.dirname(__file__), path=path)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    hidden = [f for f in os.listdir(path) if f.startswith(".")]
    assert len(hidden) == 1  # the partial file is there, but hidden
    store = ResultStore(path)
    assert len(store.load()) == 1 and len(pd.read_parquet(path)) == 1
    assert ds.dataset(path, format="parquet").count_rows() == 1


def _writer(path, offset, n):
    store = ResultStore(path)
    for i in range(n):
        store.write([sample_row(offset + i)[0]])


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "s")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, k * 100, 25)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    df = ResultStore(path).load()
    assert len(df) == 50 and sorted(df["seed"]) == sorted(list(range(25)) + list(range(100, 125)))


def test_unknown_keys_rejected():
    with pytest.raises(ValueError):
        make_row({"bogus": 1}, engine="x", wall_time_s=0)
    with pytest.raises(ValueError):
        make_row({"kind": "x"}, metrics={"accuracy": 1}, engine="x", wall_time_s=0)
