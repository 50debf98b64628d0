"""The result store: a directory of Parquet shards under one explicit schema.

Every finished run is one row carrying its full configuration (and its ``run_id``, a content
hash of that configuration), its metrics, its mask (bits packed, with the layer shapes), its
final weights when kept, the data set id, the engine, the package version and the wall time.

Shards. The store's rows live in the files ``DIR/part-*.parquet`` (:data:`SHARD_GLOB`); nothing
else in the directory is read. Other readers should use the same glob, not the bare directory
(where a stray file breaks them): ``pd.read_parquet(sorted(glob.glob("DIR/part-*.parquet")))``,
``pyarrow.dataset.dataset(those files)``, duckdb ``select ... from 'DIR/part-*.parquet'``.

Atomic writes. Writers never clobber each other or expose partial files: a shard is written
under a hidden temporary name (``.part-*.<host>.tmp``) in the store and renamed into place, and
every shard name is unique. A temporary left by a killed writer is removed by the next store
that reads the directory: at once when the name shows a writer of this host whose process is
gone, and in any case once it is :data:`STALE_TMP_S` old (a live writer keeps its file fresh).

Checksums. Every shard records, in its Parquet key-value metadata, the store format
(``cubist.store`` = :data:`FORMAT`) and ``cubist.sha256``: :func:`content_digest` of its table, a
SHA-256 over every column's decoded values in a canonical layout (validity, lengths, value
bytes), independent of how Parquet or Arrow lay the data out, so any changed value shows.
Shards written before checksums (no ``cubist.store`` key, as in the committed ``results/``) are
accepted when they open, decode and carry exactly :data:`SCHEMA`; nothing more can be checked.

Healing. The first time a :class:`ResultStore` object meets a shard it reads it whole and
checks it. A shard that fails to open or decode or fails its checksum (*damaged*), or is not a
shard of ours (*foreign*: another schema) is reported in one line and moved aside into
``DIR/_quarantine/`` (:data:`QUARANTINE`; pandas and pyarrow skip ``_`` folders). Its runs are
then simply missing, so the next resume trains them again. ``heal=False`` reports and skips
without moving anything (``cubist store check``).

One row per run. Sweeps resume by skipping the run ids in :meth:`ResultStore.done`, and
:meth:`ResultStore.write` skips rows whose run id is already stored (or repeated in the call).
Two sweeps into one store do not both train a run: a sweep claims each chunk of work before it
trains it (:meth:`ResultStore.claim`): an exclusive lock (``flock``) on ``DIR/_claims/<key>.lock``
(:data:`CLAIMS`), held by the claiming process until the chunk's rows are stored, then removed.
The kernel drops the lock of a process that dies, so a killed sweep's claims go stale at once and
no timeout is needed; a claimant that finds a chunk claimed leaves it for later, then waits for
it and trains whatever is still missing once it has the claim. On a filesystem without working
locks (some network filesystems) a claim always succeeds and only the deduplication below
remains. Writers racing on the same run without claims can still both store it:
:meth:`ResultStore.load` keeps the first copy, and :meth:`ResultStore.drop_duplicates`
(``cubist store repair``) or :meth:`ResultStore.compact` leave one row per run for every reader
of the glob.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import socket
import struct
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

try:
    import fcntl
except ImportError:                 # no flock (Windows): claims always succeed
    fcntl = None

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
    ("params", "reinit"): "none",       # snip/grasp rows from before --reinit existed
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


# -- shards: names, checksums, checks ---------------------------------------------------------
FORMAT = "1"                      # the store format recorded in every shard (``cubist.store``)
FORMAT_KEY, DIGEST_KEY = b"cubist.store", b"cubist.sha256"
SHARD_GLOB = "part-*.parquet"     # the store's shards; every other file in the directory is ignored
QUARANTINE = "_quarantine"        # where damaged and foreign shards are moved
CLAIMS = "_claims"                # the locks of chunks being trained (ResultStore.claim)
STALE_TMP_S = 600.0               # a temporary this old is left by a dead writer, whoever wrote it
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:48] or "host"
# .part-<ns>-<pid>-<hex>.parquet[.<host>].tmp (shards written before checksums name no host)
_TMP_NAME = re.compile(r"^\.part-\d+-(?P<pid>\d+)-[0-9a-f]+\.parquet(?:\.(?P<host>[A-Za-z0-9-]+))?\.tmp$")
# what a broken file raises while it is opened or decoded (a missing or unreadable one is re-raised)
_BROKEN = (pa.ArrowException, OSError, ValueError, EOFError, KeyError, IndexError, TypeError, UnicodeDecodeError)


def content_digest(table: pa.Table) -> str:
    """SHA-256 (hex) of a table's values, independent of their physical layout.

    Per column, in order: its name and type (list item names left out), then its validity bits and its values: fixed-width
    values as little-endian bytes (nulls as zero), strings and binaries as their lengths and
    concatenated bytes, lists as their lengths and, recursively, their flattened values. The
    same rows give the same digest however Parquet, Arrow or a reader chunk and slice them.
    """
    h = hashlib.sha256(struct.pack("<q", table.num_rows))
    for name in table.column_names:
        column = table.column(name)
        h.update(f"{name}:{_type_tag(column.type)}\0".encode())
        _digest_array(h, column.combine_chunks())
    return h.hexdigest()


def _type_tag(t: pa.DataType) -> str:
    """The type without the names of list items (Parquet renames them)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{'large_' if pa.types.is_large_list(t) else ''}list<{_type_tag(t.value_type)}>"
    return str(t)


def _digest_array(h, arr: pa.Array) -> None:
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    h.update(struct.pack("<q", len(arr)))
    h.update(np.packbits(valid).tobytes())
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        h.update(np.asarray(pc.list_value_length(arr).fill_null(0), dtype="<i8").tobytes())
        _digest_array(h, arr.flatten())          # flatten skips null lists and honours slicing
    elif pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_binary(t) or pa.types.is_large_string(t):
        if arr.null_count:
            arr = arr.filter(pc.is_valid(arr))
        if len(arr):
            _, offsets, data = arr.buffers()
            width = np.int64 if pa.types.is_large_binary(t) or pa.types.is_large_string(t) else np.int32
            offs = np.frombuffer(offsets, dtype=width)[arr.offset:arr.offset + len(arr) + 1].astype("<i8")
            h.update(np.diff(offs).tobytes())
            if data is not None:
                h.update(memoryview(data)[offs[0]:offs[-1]])
    elif pa.types.is_boolean(t):
        h.update(np.packbits(arr.fill_null(False).to_numpy(zero_copy_only=False)).tobytes())
    else:
        if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_duration(t):
            arr = arr.cast(pa.int64())
        values = arr.fill_null(0).to_numpy(zero_copy_only=False)
        h.update(np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes())


@dataclass
class ShardCheck:
    """What reading one shard found: ``status`` ``ok`` (checksum verified), ``legacy`` (written
    before checksums: it opened, decoded and has the schema), ``damaged`` (it does not open or
    decode, or fails its checksum), ``foreign`` (not a shard of ours) or ``newer`` (a later store
    format; left alone). ``table`` is the whole shard when it can be used."""

    name: str
    status: str
    reason: str = ""
    table: pa.Table | None = field(default=None, repr=False)

    @property
    def usable(self) -> bool:
        return self.status in ("ok", "legacy")


def _first_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= 120 else text[:117] + "..."


def _schema_problem(schema: pa.Schema) -> str | None:
    """Why ``schema`` is not :data:`SCHEMA` (None when it is, whatever the column order)."""
    if "run_id" not in schema.names:
        return "no run_id column"
    types = {f.name: f.type for f in schema}
    missing = [c for c in COLUMNS if c not in types]
    extra = [c for c in types if c not in SCHEMA.names]
    wrong = [c for c in COLUMNS if c in types and not types[c].equals(SCHEMA.field(c).type)]
    if missing or extra or wrong:
        parts = [f"{what} {', '.join(cols[:3])}{' ...' if len(cols) > 3 else ''}"
                 for what, cols in (("lacks", missing), ("has unknown columns", extra), ("has other types for", wrong))
                 if cols]
        return "not the store's schema: " + "; ".join(parts)
    return None


def check_shard(path: str) -> ShardCheck:
    """Open, decode and verify one shard (see the module docstring). A missing file raises
    FileNotFoundError, an unreadable one PermissionError."""
    name = os.path.basename(path)
    try:
        with pq.ParquetFile(path) as pf:
            meta = pf.schema_arrow.metadata or {}
            fmt = meta.get(FORMAT_KEY)
            problem = _schema_problem(pf.schema_arrow)
            if fmt is not None and fmt != FORMAT.encode():
                return ShardCheck(name, "newer", f"written in store format {fmt.decode(errors='replace')}; "
                                                 f"this cubist reads format {FORMAT}")
            if problem is not None:
                return ShardCheck(name, "damaged" if fmt is not None else "foreign", problem)
            table = pf.read().select(list(COLUMNS)).replace_schema_metadata(None)
    except (FileNotFoundError, PermissionError):
        raise
    except _BROKEN as e:
        return ShardCheck(name, "damaged", f"unreadable: {_first_line(e)}")
    if fmt is None:
        return ShardCheck(name, "legacy", "written before checksums", table)
    expected = meta.get(DIGEST_KEY, b"").decode(errors="replace")
    try:
        actual = content_digest(table)
    except _BROKEN as e:
        return ShardCheck(name, "damaged", f"undecodable: {_first_line(e)}")
    if actual != expected:
        return ShardCheck(name, "damaged", "checksum mismatch" if expected else "no checksum")
    return ShardCheck(name, "ok", "", table)


def _read_columns(path: str, columns) -> pa.Table:
    with pq.ParquetFile(path) as pf:
        table = pf.read(columns=list(columns) if columns else None)
    return table.select(list(columns) if columns else list(COLUMNS)).replace_schema_metadata(None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _stderr(message: str) -> None:
    print(f"cubist: {message}", file=sys.stderr, flush=True)


@dataclass
class Temporary:
    """A hidden ``.part-*.tmp`` file: a shard being written, or one a killed writer left."""

    name: str
    age_s: float
    stale: bool
    why: str


@dataclass
class StoreReport:
    """What :meth:`ResultStore.check` found in a store directory."""

    path: str
    shards: int = 0                 # usable shards
    legacy: int = 0                 # of which written before checksums (not verifiable)
    rows: int = 0
    runs: int = 0
    duplicate_rows: int = 0         # rows beyond the first of their run id
    duplicate_runs: int = 0         # run ids stored more than once
    damaged: list = field(default_factory=list)      # (name, reason)
    foreign: list = field(default_factory=list)      # (name, reason)
    newer: list = field(default_factory=list)        # (name, reason)
    moved: list = field(default_factory=list)        # names moved into the quarantine by this check
    removed: list = field(default_factory=list)      # Temporary removed by this check
    stray: list = field(default_factory=list)        # other entries of the directory (ignored)
    temporaries: list = field(default_factory=list)  # Temporary
    quarantined: int = 0                              # files in DIR/_quarantine

    @property
    def problems(self) -> int:
        """What is wrong in the directory now: damaged, foreign and newer shards not moved
        aside, duplicate rows (one problem) and stale temporaries."""
        left = [n for n, _ in self.damaged + self.foreign if n not in self.moved]
        return len(left) + len(self.newer) + bool(self.duplicate_rows) + sum(t.stale for t in self.temporaries)



class Claim:
    """A held claim (:meth:`ResultStore.claim`); :meth:`release` once the claimed rows are stored."""

    def __init__(self, path: str | None, fd: int | None):
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)    # while still locked: a newcomer then locks a fresh file
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def chunk_key(run_ids) -> str:
    """The claim key of a chunk of runs (:meth:`ResultStore.claim`): a hash of its run ids, in
    any order. Sweeps plan their chunks from every run of their configuration, not from what is
    stored, so two sweeps of one configuration give a chunk the same key."""
    ids = sorted(run_ids)
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:24]


class ChunkClaims:
    """One sweep's claims on its chunks in a shared store (the protocol of the module docstring).

    ``missing``: the run ids the sweep still has to store (updated from the store at every
    :meth:`take`; the sweep filters its rows by it). :meth:`take` claims a chunk before it is
    trained: ``"train"`` (this sweep holds it now), ``"busy"`` (another live sweep holds it:
    leave it for later, then take it again with ``wait=True``) or ``"done"`` (its runs were stored
    meanwhile). :meth:`release` once the chunk's rows are stored; :meth:`release_all` (or leaving
    the ``with`` block) drops whatever is still held. With ``store=None`` every chunk is to train.
    """

    def __init__(self, store: "ResultStore | None", missing: set):
        self.store, self.missing = store, missing
        self._held: dict[str, Claim] = {}

    def take(self, run_ids, *, wait: bool = False) -> str:
        run_ids = list(run_ids)
        if self.store is None:
            return "train"
        key = chunk_key(run_ids)
        claim = self.store.claim(key, wait=wait)
        if claim is None:
            return "busy"
        self.missing.difference_update(self.store.done())   # what another sweep stored meanwhile
        if not any(r in self.missing for r in run_ids):
            claim.release()
            return "done"
        self._held[key] = claim
        return "train"

    def release(self, run_ids) -> None:
        claim = self._held.pop(chunk_key(run_ids), None)
        if claim is not None:
            claim.release()

    def release_all(self) -> None:
        for key in list(self._held):
            self._held.pop(key).release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release_all()
        return False


class ResultStore:
    """A directory of Parquet shards (``part-*.parquet``) sharing :data:`SCHEMA`.

    ``heal``: move damaged and foreign shards into ``DIR/_quarantine`` and remove temporaries of
    dead writers (default); with ``heal=False`` nothing in the directory is changed, bad shards
    are only reported and skipped. ``log(message)`` reports each bad shard once, in one line
    (default: stderr). Shards are immutable: each is verified once per store object.
    """

    def __init__(self, path, *, heal: bool = True, log=None):
        self.path = os.fspath(path)
        self.heal = heal
        self.log = log if log is not None else _stderr
        self._good: dict[str, tuple] = {}   # shard name -> ((size, mtime_ns), run ids, legacy), verified
        self._bad: dict[str, tuple] = {}    # shard name -> ((size, mtime_ns), ShardCheck), reported
        self._rejected: list[tuple[ShardCheck, bool]] = []   # every bad shard met: (check, moved aside)
        self._removed: list[Temporary] = []                  # stale temporaries removed
        self._swept = False

    def __repr__(self):
        return f"ResultStore({self.path!r})"

    # -- the directory ------------------------------------------------------------------------
    def _entries(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.path) as it:
                return sorted(it, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _candidates(self) -> list[str]:
        return [e.name for e in self._entries() if fnmatch.fnmatchcase(e.name, SHARD_GLOB) and e.is_file()]

    def temporaries(self) -> list[Temporary]:
        """The hidden temporaries in the directory, each marked stale or being written."""
        out, now = [], time.time()
        for e in self._entries():
            if not (e.name.startswith(".part-") and e.name.endswith(".tmp")):
                continue
            try:
                age = now - e.stat().st_mtime
            except FileNotFoundError:
                continue
            m = _TMP_NAME.match(e.name)
            if age > STALE_TMP_S:
                out.append(Temporary(e.name, age, True, f"untouched for {age / 60:.0f} min"))
            elif m and m["host"] == _HOST and not _pid_alive(int(m["pid"])):
                out.append(Temporary(e.name, age, True, f"its writer (pid {m['pid']}) is gone"))
            else:
                out.append(Temporary(e.name, age, False, "being written"))
        return out

    def remove_stale_temporaries(self) -> list[Temporary]:
        """Remove the temporaries left by dead writers; returns them."""
        removed = []
        for t in self.temporaries():
            if t.stale:
                try:
                    os.unlink(os.path.join(self.path, t.name))
                except FileNotFoundError:
                    continue
                removed.append(t)
        return removed

    def _sweep_once(self) -> None:
        if self.heal and not self._swept:
            self._swept = True
            for t in self.remove_stale_temporaries():
                self._removed.append(t)
                self.log(f"store {self.path}: removed {t.name}, a temporary left by a killed writer ({t.why})")

    def _reject(self, path: str, key, check: ShardCheck) -> None:
        self._bad[check.name] = (key, check)
        self._good.pop(check.name, None)
        what = f"store {self.path}: shard {check.name} is {check.status} ({check.reason})"
        if not self.heal or check.status == "newer":
            self._rejected.append((check, False))
            self.log(f"{what}; skipped")
            return
        folder = os.path.join(self.path, QUARANTINE)
        dest = os.path.join(folder, check.name)
        if os.path.exists(dest):
            dest = os.path.join(folder, f"{check.name}.{uuid.uuid4().hex[:8]}")
        try:
            os.makedirs(folder, exist_ok=True)
            os.rename(path, dest)
        except FileNotFoundError:   # another reader moved it first
            return
        except OSError as e:        # a read-only store: skip it all the same
            self._rejected.append((check, False))
            self.log(f"{what}; skipped (cannot move it aside: {_first_line(e)})")
            return
        self._rejected.append((check, True))
        self.log(f"{what}; moved to {os.path.join(self.path, QUARANTINE)}/, its runs will be trained again "
                 f"by the next resume")

    def _read(self, columns=None, data: bool = True, progress=None) -> list[tuple[str, pa.Table | None]]:
        """``[(path, table of columns or None)]`` of the usable shards, in name order; shards not
        met before are read whole and checked, bad ones rejected (:meth:`_reject`).
        ``progress(shards_done, shards)`` is called as each shard is done."""
        self._sweep_once()
        out, names = [], self._candidates()
        for i, name in enumerate(names):
            if progress is not None and i:
                progress(i, len(names))
            path = os.path.join(self.path, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:   # compacted or quarantined by another process meanwhile
                continue
            key = (st.st_size, st.st_mtime_ns)
            good, bad = self._good.get(name), self._bad.get(name)
            if bad is not None and bad[0] == key:
                continue
            if good is not None and good[0] == key:
                if not data:
                    out.append((path, None))
                    continue
                try:
                    out.append((path, _read_columns(path, columns)))
                    continue
                except FileNotFoundError:
                    continue
                except PermissionError:
                    raise
                except _BROKEN:
                    pass                # changed since it was verified: check it again
            try:
                check = check_shard(path)
            except FileNotFoundError:
                continue
            if not check.usable:
                self._reject(path, key, check)
                continue
            self._good[name] = (key, check.table.column("run_id").to_pylist(), check.status == "legacy")
            out.append((path, (check.table.select(list(columns)) if columns else check.table) if data else None))
        if progress is not None:
            progress(len(names), len(names))
        present = set(names)
        for known in (self._good, self._bad):
            for name in [n for n in known if n not in present]:
                del known[name]
        return out

    def shards(self) -> list[str]:
        """Paths of the usable shards (checked; bad ones are reported and, healing, moved)."""
        return [path for path, _ in self._read(data=False)]

    # -- claims -------------------------------------------------------------------------------
    def claim(self, key: str, *, wait: bool = False, poll_s: float = 0.5) -> Claim | None:
        """Claim ``key`` (a chunk of work) for this process: a :class:`Claim`, or None when a live
        process holds it (``wait``: poll until it is free). See the module docstring."""
        if fcntl is None or not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            if fcntl is None:
                return Claim(None, None)
            raise ValueError(f"bad claim key {key!r}")
        folder = os.path.join(self.path, CLAIMS)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{key}.lock")
        while True:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if not wait:
                    return None
                time.sleep(poll_s)
                continue
            except OSError:         # no locks here: claims cannot exclude, write() still dedupes
                os.close(fd)
                return Claim(None, None)
            try:                    # the file we locked may have been released (unlinked) meanwhile
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{_HOST} {os.getpid()} {time.time():.0f}\n".encode())
                return Claim(path, fd)
            os.close(fd)

    # -- writing ------------------------------------------------------------------------------
    def write(self, rows: list[dict]) -> str | None:
        """Write rows as one new shard, atomically; returns its path (None when nothing is new).

        Rows whose run id is already stored, or repeated in ``rows``, are skipped (the first
        is kept): a rerun or a second writer that comes later stores nothing twice.
        """
        if not rows:
            return None
        stored, fresh = self.done(), []
        for r in rows:
            rid = r.get("run_id")
            if rid not in stored:
                stored.add(rid)
                fresh.append(r)
        if not fresh:
            return None
        return self._write_table(pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in fresh], schema=SCHEMA))

    def _write_table(self, table: pa.Table) -> str:
        """Write ``table`` (:data:`SCHEMA`) as one new shard with its checksum, atomically."""
        os.makedirs(self.path, exist_ok=True)
        table = table.replace_schema_metadata({FORMAT_KEY: FORMAT.encode(), DIGEST_KEY: content_digest(table).encode()})
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = os.path.join(self.path, f".{name}.{_HOST}.tmp")
        final = os.path.join(self.path, name)
        try:
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        st = os.stat(final)
        self._good[name] = ((st.st_size, st.st_mtime_ns), table.column("run_id").to_pylist(), False)
        return final

    # -- reading ------------------------------------------------------------------------------
    def table(self, columns=None, progress=None) -> pa.Table:
        """Every row of the usable shards (duplicates included), ``columns`` only
        (``progress(shards_done, shards)`` as each shard is read)."""
        tables = [t for _, t in self._read(columns, progress=progress)]
        if not tables:
            return SCHEMA.empty_table().select(list(columns) if columns else list(COLUMNS))
        return pa.concat_tables(tables)

    def done(self) -> set[str]:
        """Run ids already stored."""
        paths = self._read(data=False)
        return {rid for path, _ in paths for rid in self._good[os.path.basename(path)][1]}

    def __len__(self):
        return len(self.done())

    def load(self, columns=None, progress=None):
        """All rows as a pandas DataFrame, one per run id (the first stored);
        ``progress(shards_done, shards)`` is called as each shard is read."""
        cols = list(columns) if columns else None
        if cols is not None and "run_id" not in cols:
            cols = ["run_id"] + cols
        df = self.table(cols, progress=progress).to_pandas()
        return df.drop_duplicates("run_id", keep="first").reset_index(drop=True)

    # -- upkeep -------------------------------------------------------------------------------
    def drop_duplicates(self) -> int:
        """Leave one row per run id in the directory (the first, in shard order): every shard
        holding a later copy is rewritten without it. Returns the number of rows dropped. Run
        it when no other process repairs the store at the same time."""
        seen, dropped = set(), 0
        for path, table in self._read():
            ids = table.column("run_id").to_pylist()
            keep = []
            for i, rid in enumerate(ids):
                if rid not in seen:
                    seen.add(rid)
                    keep.append(i)
            if len(keep) == len(ids):
                continue
            if keep:
                self._write_table(table.take(keep))
            os.unlink(path)
            self._good.pop(os.path.basename(path), None)
            dropped += len(ids) - len(keep)
        return dropped

    def compact(self, max_rows: int | None = None) -> str | None:
        """Merge all shards into one (or into shards of at most ``max_rows`` rows, e.g. to keep
        files small enough for git hosting), one row per run id; returns the first new shard's path."""
        parts = self._read()
        if not parts:
            return None
        table = pa.concat_tables([t for _, t in parts])
        ids = table.column("run_id").to_pylist()
        if len(parts) == 1 and len(set(ids)) == len(ids) and (max_rows is None or len(ids) <= max_rows):
            return parts[0][0]
        seen, keep = set(), []
        for i, rid in enumerate(ids):
            if rid not in seen:
                seen.add(rid)
                keep.append(i)
        table = table.take(keep)
        step = max_rows or max(len(table), 1)
        written = [self._write_table(table.slice(start, step)) for start in range(0, len(table), step)]
        new = written[0] if written else None
        for path, _ in parts:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self._good.pop(os.path.basename(path), None)
        return new

    def check(self) -> StoreReport:
        """Read every shard and report what the directory holds (:class:`StoreReport`); with
        ``heal`` bad shards are moved aside and stale temporaries removed on the way."""
        self._bad.clear()          # report every bad shard present, also those met before
        first_bad, first_tmp = len(self._rejected), len(self._removed)
        report = StoreReport(self.path)
        counts: dict[str, int] = {}
        for path, _ in self._read(data=False):
            _, ids, legacy = self._good[os.path.basename(path)]
            report.shards += 1
            report.legacy += legacy
            for rid in ids:
                counts[rid] = counts.get(rid, 0) + 1
        report.rows, report.runs = sum(counts.values()), len(counts)
        report.duplicate_rows = report.rows - report.runs
        report.duplicate_runs = sum(1 for n in counts.values() if n > 1)
        for check, moved in self._rejected[first_bad:]:
            getattr(report, check.status).append((check.name, check.reason))
            if moved:
                report.moved.append(check.name)
        report.removed = self._removed[first_tmp:]
        report.temporaries = self.temporaries()
        shards = set(self._candidates())
        report.stray = [e.name for e in self._entries()
                        if e.name not in shards and e.name not in (QUARANTINE, CLAIMS)
                        and not (e.name.startswith(".part-") and e.name.endswith(".tmp"))]
        folder = os.path.join(self.path, QUARANTINE)
        report.quarantined = len(os.listdir(folder)) if os.path.isdir(folder) else 0
        return report


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
