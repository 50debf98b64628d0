"""The result store: a directory of Parquet shards under one explicit schema.

Every finished run is one row carrying its full configuration (and its ``run_id``, a content
hash of that configuration), its metrics, its mask (bits packed, with the layer shapes), its
final weights when kept, the data set id, the engine, the package version and the wall time.

Writers never clobber each other or expose partial files: a shard is written under a hidden
temporary name (``.part-*.tmp``) in the store and renamed into place, and every shard name is
unique. Readers (this class, ``pandas.read_parquet(dir)``, ``pyarrow.dataset``, duckdb's
``read_parquet('dir/*.parquet')``) see only complete shards. Sweeps resume by skipping the
run ids in :meth:`ResultStore.done`; :meth:`ResultStore.load` drops duplicate run ids (two
workers that raced on the same run), keeping the first.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import time
import uuid
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .version import __version__
from .masks import pack_masks, unpack_masks

SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    # configuration
    pa.field("kind", pa.string()),          # what produced the row: search_widths, search_masks, prune, ...
    pa.field("method", pa.string()),        # dense, mask, a pruner's name, ...
    pa.field("widths", pa.list_(pa.int32())),
    pa.field("init_width", pa.int32()),
    pa.field("init", pa.string()),          # "random" (init_seed below) or "checkpoint:<id>" (a fixed init)
    pa.field("init_seed", pa.int64()),      # seed of the run's own random init (cubist.model.run_init_seed)
    pa.field("lr", pa.float64()),
    pa.field("schedule", pa.string()),
    pa.field("epochs", pa.int32()),
    pa.field("batch_size", pa.int32()),
    pa.field("momentum", pa.float64()),
    pa.field("weight_decay", pa.float64()),
    pa.field("seed", pa.int64()),
    pa.field("target_nnz", pa.int32()),     # pruning budget F (null for search rows)
    pa.field("params", pa.string()),        # JSON: method hyper-parameters
    pa.field("config", pa.string()),        # JSON: the whole configuration, run_id hashes it
    pa.field("dataset_id", pa.string()),
    # metrics
    pa.field("train_acc", pa.float64()),
    pa.field("heldout_acc", pa.float64()),
    pa.field("final_loss", pa.float64()),
    pa.field("diverged", pa.bool_()),
    pa.field("weight_nnz", pa.int32()),
    pa.field("bias_nnz", pa.int32()),
    pa.field("effective_nnz", pa.int32()),
    pa.field("dead_units", pa.int32()),
    pa.field("metrics", pa.string()),       # JSON: method-specific extra metrics
    # the network
    pa.field("mask_bits", pa.binary()),
    pa.field("mask_shapes", pa.list_(pa.list_(pa.int32()))),
    pa.field("weights", pa.binary()),       # float32 little-endian: W0, b0, W1, b1, ... (masked)
    # provenance
    pa.field("engine", pa.string()),
    pa.field("version", pa.string()),
    pa.field("wall_time_s", pa.float64()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
])

COLUMNS = tuple(SCHEMA.names)
CONFIG_COLUMNS = ("kind", "method", "widths", "init_width", "init", "init_seed", "lr", "schedule", "epochs", "batch_size",
                  "momentum", "weight_decay", "seed", "target_nnz", "params", "dataset_id")


def write_atomically(path: str, write) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it onto ``path``: a reader
    (or a crash) never sees a partial file. The temporary file keeps ``path``'s suffix."""
    path = os.fspath(path)
    stem, ext = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{ext}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (np.ndarray, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


#: Configuration entries added after rows were first written, with the value rows written before
#: them implicitly had: an entry at that value is left out of the run id (:func:`canonical_config`),
#: so adding a field with a default never renames stored runs. A path is a tuple of nested keys.
#: Add a field here when it joins the configuration.
OMITTED_AT_DEFAULT: dict[tuple[str, ...], object] = {
    ("data",): {},                      # search rows: the data set, recorded when not the paper's spiral
    ("data", "name"): "spiral",         # pruner rows: the data set's name ...
    ("data", "recipe"): {},             # ... and the recipe fields that differ from its defaults
}


def canonical_config(config: dict, omitted=None, _path: tuple = ()) -> dict:
    """``config`` without the entries at their :data:`OMITTED_AT_DEFAULT` values (recursively)."""
    omitted = OMITTED_AT_DEFAULT if omitted is None else omitted
    out = {}
    for key, value in config.items():
        path = _path + (key,)
        if isinstance(value, dict):
            value = canonical_config(value, omitted, path)
        if path in omitted and value == omitted[path]:
            continue
        out[key] = value
    return out


def run_id(config: dict) -> str:
    """Content hash (16 hex digits) of a run's canonical configuration (:func:`canonical_config`)."""
    return hashlib.sha256(canonical_json(canonical_config(config)).encode()).hexdigest()[:16]


def make_row(config: dict, *, masks=None, weights=None, metrics: dict | None = None, extra: dict | None = None,
             engine: str, wall_time_s: float) -> dict:
    """One result row from a configuration and the run's outcome.

    ``config`` holds the configuration columns (``CONFIG_COLUMNS``; ``params`` as a dict) plus
    anything else that identifies the run; it is stored whole as JSON and hashed into ``run_id``.
    ``metrics`` holds the metric columns; ``extra`` method-specific metrics (JSON).
    ``weights``: ``[(W, b), ...]`` float32 arrays, stored as bytes.
    """
    unknown = set(config) - set(CONFIG_COLUMNS) - {"data", "search", "extra_config"}
    if unknown:
        raise ValueError(f"unknown configuration keys {sorted(unknown)}")
    row = {c: None for c in COLUMNS}
    for key in CONFIG_COLUMNS:
        value = config.get(key)
        row[key] = canonical_json(value if value is not None else {}) if key == "params" else value
    if row["widths"] is not None:
        row["widths"] = [int(w) for w in row["widths"]]
    row["config"] = canonical_json(config)
    row["run_id"] = run_id(config)
    for key, value in (metrics or {}).items():
        if key not in COLUMNS:
            raise ValueError(f"unknown metric column {key!r}")
        row[key] = value.item() if isinstance(value, np.generic) else value
    row["metrics"] = canonical_json(extra or {})
    if masks is not None:
        row["mask_bits"], row["mask_shapes"] = pack_masks(masks)
    if weights is not None:
        row["weights"] = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for wb in weights for a in wb)
    row["engine"], row["wall_time_s"] = engine, float(wall_time_s)
    row["version"] = __version__
    row["created_at"] = datetime.now(timezone.utc)
    return row


def row_masks(row) -> list[np.ndarray]:
    """The boolean layer masks stored in a row (dict or DataFrame row)."""
    return unpack_masks(row["mask_bits"], [list(s) for s in row["mask_shapes"]])


def row_weights(row) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``[(W, b), ...]`` stored in a row, shaped by its mask shapes."""
    flat = np.frombuffer(row["weights"], dtype="<f4")
    out, start = [], 0
    for shape in row["mask_shapes"]:
        shape = tuple(int(s) for s in shape)
        n = int(np.prod(shape))
        w = flat[start:start + n].reshape(shape)
        b = flat[start + n:start + n + shape[0]]
        start += n + shape[0]
        out.append((w.copy(), b.copy()))
    return out


class ResultStore:
    """A directory of Parquet shards (``part-*.parquet``) sharing :data:`SCHEMA`."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"ResultStore({self.path!r})"

    def shards(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.path, "part-*.parquet")))

    def write(self, rows: list[dict]) -> str | None:
        """Write rows as one new shard, atomically; returns its path (None for no rows)."""
        if not rows:
            return None
        os.makedirs(self.path, exist_ok=True)
        table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=SCHEMA)
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = os.path.join(self.path, f".{name}.tmp")
        try:
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            final = os.path.join(self.path, name)
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return final

    def table(self, columns=None) -> pa.Table:
        shards = self.shards()
        if not shards:
            return SCHEMA.empty_table().select(list(columns) if columns else list(COLUMNS))
        return pq.ParquetDataset(shards, schema=SCHEMA).read(columns=list(columns) if columns else None)

    def done(self) -> set[str]:
        """Run ids already stored."""
        return set(self.table(["run_id"]).column("run_id").to_pylist())

    def __len__(self):
        return len(self.done())

    def load(self, columns=None):
        """All rows as a pandas DataFrame, one per run id."""
        cols = list(columns) if columns else None
        if cols is not None and "run_id" not in cols:
            cols = ["run_id"] + cols
        df = self.table(cols).to_pandas()
        return df.drop_duplicates("run_id", keep="first").reset_index(drop=True)

    def compact(self) -> str | None:
        """Merge all shards into one (deduplicated); returns the new shard's path."""
        old = self.shards()
        if len(old) < 2:
            return old[0] if old else None
        table = pq.ParquetDataset(old, schema=SCHEMA).read()
        ids = table.column("run_id").to_pylist()
        seen, keep = set(), []
        for i, r in enumerate(ids):
            if r not in seen:
                seen.add(r)
                keep.append(i)
        table = table.take(keep)
        new = self.write(table.to_pylist())
        for path in old:
            os.unlink(path)
        return new


class StoreWriter:
    """Buffer rows and flush them as shards every ``flush_every`` rows or ``flush_seconds``.

    Use as a context manager; whatever is buffered is flushed on exit, also on error.
    """

    def __init__(self, store: ResultStore, flush_every: int = 256, flush_seconds: float = 20.0):
        self.store, self.flush_every, self.flush_seconds = store, flush_every, flush_seconds
        self.buffer: list[dict] = []
        self.last = time.monotonic()
        self.written = 0

    def add(self, rows) -> None:
        self.buffer.extend(rows if isinstance(rows, list) else [rows])
        if len(self.buffer) >= self.flush_every or time.monotonic() - self.last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.store.write(self.buffer)
            self.written += len(self.buffer)
            self.buffer = []
        self.last = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.flush()
        return False
