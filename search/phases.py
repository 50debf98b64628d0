"""The paper's combinatorial search, phase 1 (dense widths) and phase 2 (masks).

Zhang & Papyan, "Sparsest Models Elude Pruning" (ICML 2024), §3 of ALGORITHMS.md:

- phase 1 trains every dense sub-architecture ``(d1, ..., dk)`` with hidden widths in
  ``1..max_width`` on the hyper-parameter grid; the smallest architectures reaching the target
  accuracy are the candidates;
- phase 2 enumerates the masks of the chosen widths (one per symmetry orbit, or every labelled
  mask for a fixed initialisation), trains each on the grid and reports the fewest weight
  nonzeros reaching the target. Sparsest-first by default: whole nnz levels are trained in
  increasing order and the search stops after the first level in which some mask reaches the
  target; ``exhaustive`` trains every level, ``max_nnz`` every level up to a bound (without
  adaptive rounds, every level's chunks then go out at once: no level waits for the one before).

Inits. On the default ``init=None`` every run draws its own random init (the paper runs every
configuration in its own unseeded process): the seed is :func:`cubist.model.run_init_seed` of
the run's identity, ``(widths, mask key, lr, schedule, k)`` with ``k`` the seed index
``0..K-1``, recorded in the row's ``init_seed``. Runs therefore never share an init, whatever
chunk, job or backend trains them, which is what makes one mask per symmetry orbit enough. The
data order is ``epoch_permutation(k, epoch)``, shared by the runs of one seed index (the engine
trains them in lockstep on the same batches). A :class:`FixedInit` (``--init-checkpoint``)
instead gives every run the same init (the paper's fixed-init experiments): architecture
``(d1, ..., dk)`` starts from the top-left blocks of the saved width-16 network and the seed
index ``k`` gives only the data order; rows record ``init = "checkpoint:<id>"``. Phase 2 then
enumerates every labelled mask: orbits are refused, since under one fixed init permuting the
hidden units permutes which init values a mask keeps, so masks of one orbit are different runs
(ALGORITHMS.md §3). Phase 1 with ``params_below`` searches only the architectures with fewer
parameters (weights and biases, :func:`dense_param_count`) than a benchmark, as the paper's
fixed-init phase 1 does (fewer than the 37 of the dense (3,3,3) at 95%). :func:`best_init`
saves the init behind the best phase-1 run of an architecture (``cubist search best-init``).

Success over inits. With ``K`` seeds every mask is trained from ``K`` independent inits at every
grid point; a mask's *rate* is its best grid point's share of runs reaching the target, with a
Wilson interval (:mod:`cubist.stats`). The result names the sparsest nnz at which some run
reached the target and, for ``min_rate = q``, the sparsest nnz at which some mask's rate is
``>= q``.

Adaptive seeds (:class:`Adaptive`, ``--adaptive-inits 1,3,10``): successive halving over the
masks of one level. Round 0 trains every mask with the first count of inits at every grid point;
each later round keeps the ``keep`` share (at least one) of the masks of the round before,
ranked by successes, then best accuracy, then mask key, and trains them up to the next count.
A run is the same run whichever round trains it (same identity, same init), so the adaptive
search is the uniform one restricted to fewer runs; rows record their ``round``.

Every training is one result row (``kind`` ``search_widths`` or ``search_masks``) whose
configuration holds the mask, so a rerun trains only what is missing. Work is cut into
chunks of models trained together by the numba engine (:func:`search.engine.train_masks`);
chunks run in-process, or spread over ``jobs`` joblib workers (any joblib backend, a Dask
or Ray cluster included, via ``joblib.parallel_config``; :func:`run_chunks`). The chunks are
cut from every run of a level (or round), stored or not, and each is claimed in the store before
it is trained, so two sweeps into one store train every run once (:func:`run_chunks`).
"""
from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from cubist.checkpoint import FixedInit, save_init
from cubist.data import DataConfig, Dataset
from cubist.dispatch import map_unordered, on_cluster
from cubist.masks import dense_weight_count, mask_counts, mask_key, unpack_masks
from cubist.model import RANDOM_INIT, run_init_seed
from cubist.stats import DEFAULT_TARGET, reached_target, wilson_interval
from cubist.store import ChunkClaims, ResultStore, make_row, run_id
from cubist.train import SCHEDULES, TrainConfig, protocol_field


@dataclass(frozen=True)
class Grid:
    """The hyper-parameter grid every architecture or mask is trained on."""

    lrs: tuple[float, ...] = field(default=(0.05, 0.1), metadata={"help": "learning rates"})
    schedules: tuple[str, ...] = field(default=SCHEDULES, metadata={"help": "learning-rate schedules",
                                                                    "choices": SCHEDULES})
    seeds: int = field(default=1, metadata={"help": "independent inits per mask and grid point (seed indices 0..K-1)"})
    epochs: int = protocol_field("epochs")
    batch_size: int = protocol_field("batch_size")
    momentum: float = protocol_field("momentum")
    weight_decay: float = protocol_field("weight_decay")
    early_exit: bool = field(default=True, metadata={"help": "stop runs that provably output a constant (exact)"})

    def __post_init__(self):
        # a value given twice is one grid point, trained once (the first occurrence's order kept)
        object.__setattr__(self, "lrs", tuple(dict.fromkeys(self.lrs)))
        object.__setattr__(self, "schedules", tuple(dict.fromkeys(self.schedules)))
        for lr, sch in itertools.product(self.lrs, self.schedules):  # validated by TrainConfig
            TrainConfig(lr=lr, schedule=sch, epochs=self.epochs, batch_size=self.batch_size,
                        momentum=self.momentum, weight_decay=self.weight_decay)
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")

    def points(self):
        """(lr, schedule, seed) for every run of one architecture or mask."""
        return list(itertools.product(self.lrs, self.schedules, range(self.seeds)))


@dataclass(frozen=True)
class Adaptive:
    """Adaptive seeds: inits per mask and grid point after each round, and the share kept per round."""

    inits: tuple[int, ...] = field(default=(1, 3, 10), metadata={
        "help": "adaptive seeds: inits per mask and grid point after each round", "flag": "adaptive_inits"})
    keep: float = field(default=0.25, metadata={"help": "adaptive seeds: share of a round's masks that the next round trains"})

    def __post_init__(self):
        if not self.inits or any(k < 1 for k in self.inits) or list(self.inits) != sorted(set(self.inits)):
            raise ValueError(f"adaptive inits must be increasing counts >= 1, got {self.inits}")
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")


# -- one chunk of models ---------------------------------------------------------------------
@dataclass
class Chunk:
    """Models of one architecture trained together: masks stacked on a leading axis."""

    widths: tuple[int, ...]
    masks: list            # per layer: (R, out, in) bool
    lrs: np.ndarray        # (R,)
    schedules: list        # R names
    seeds: np.ndarray      # (R,) seed indices k (data order)
    configs: list          # R row configurations (with their init seeds)
    rounds: list = field(default_factory=list)  # R adaptive rounds (0 for a uniform design)

    def __post_init__(self):
        if not self.rounds:
            self.rounds = [0] * len(self.configs)

    def subset(self, index) -> "Chunk":
        """The models at positions ``index`` (in that order)."""
        index = list(index)
        return Chunk(self.widths, [m[index] for m in self.masks], self.lrs[index], [self.schedules[i] for i in index],
                     self.seeds[index], [self.configs[i] for i in index], [self.rounds[i] for i in index])


def _train_engine(chunk: Chunk, data: Dataset, grid: Grid, init: FixedInit | None, threads: int | None,
                  on_epochs=None):
    """The engine's training of ``chunk`` (:func:`search.engine.train_masks`), and whether early exit was on."""
    from .engine import train_masks

    init_seeds = [c["init_seed"] if c["init_seed"] is not None else 0 for c in chunk.configs]
    exit_on = grid.early_exit and data.balanced
    res = train_masks(data.X, data.y, chunk.widths, chunk.masks, lrs=chunk.lrs, schedules=chunk.schedules,
                      seeds=chunk.seeds, epochs=grid.epochs, batch_size=grid.batch_size, momentum=grid.momentum,
                      weight_decay=grid.weight_decay, init=None if init is None else init.sliced(chunk.widths),
                      X_heldout=data.X_heldout, y_heldout=data.y_heldout, threads=threads, init_seeds=init_seeds,
                      early_exit=exit_on, progress=on_epochs)
    return res, exit_on


def train_chunk(chunk: Chunk, data: Dataset, grid: Grid, init: FixedInit | None, threads: int | None,
                engine_name: str | None = None, on_epochs=None) -> list[dict]:
    """Train one chunk with the numba engine and return its result rows.

    ``engine_name``: the rows' ``engine`` column (default :func:`search.simd.engine_label`: the
    numba engine and the vector width this process compiled it for).

    ``on_epochs(epochs_done, epochs_total)``: called every (up to 10) epochs; the engine then
    returns to Python between its kernel calls, so a stop signal is handled within one call.
    The rows do not depend on it."""
    from .simd import engine_label
    engine_name = engine_label() if engine_name is None else engine_name
    t0 = time.perf_counter()
    res, exit_on = _train_engine(chunk, data, grid, init, threads, on_epochs)
    per_run = (time.perf_counter() - t0) / len(chunk.configs)
    rows = []
    counts = mask_counts(chunk.masks)  # every model's at once (leading axis R)
    for r, config in enumerate(chunk.configs):
        masks = [m[r] for m in chunk.masks]
        weights = [(w[r], b[r]) for w, b in res.weights]
        metrics = dict(train_acc=float(res.train_acc[r]), final_loss=float(res.final_loss[r]),
                       diverged=bool(res.diverged[r]), **{k: int(v[r]) for k, v in counts.items()})
        if res.heldout_acc is not None:
            metrics["heldout_acc"] = float(res.heldout_acc[r])
        extra = {"epochs_run": int(res.epochs_run[r]), "early_exit_epoch": int(res.exit_epoch[r]) or None,
                 "early_exit": EARLY_EXIT if exit_on else None, "round": chunk.rounds[r]}
        rows.append(make_row(config, masks=masks, weights=weights, metrics=metrics, extra=extra,
                             engine=engine_name, wall_time_s=per_run))
    return rows


def _train_indexed(i: int, chunk: Chunk, data: Dataset, grid: Grid, init, threads) -> tuple[int, list[dict]]:
    """A worker's chunk: its position in the sweep's plan, and its rows."""
    return i, train_chunk(chunk, data, grid, init, threads)


# -- the engine, compiled before the first chunk ----------------------------------------------------
ENGINE_NOTICE_S = 2.0   # a preparation taking longer is announced (loading from numba's cache takes about 1 s)
WARM_UP_MODELS = 128    # most models the preparation trains (and throws away)
_prepared: set = set()  # what this process has prepared (see prepare_engine)


def _engine_compilations() -> int:
    """How many kernels of the engine numba has compiled in this process (not loaded from its cache)."""
    from . import engine
    return sum(sum(d.stats.cache_misses.values()) for d in vars(engine).values()
               if hasattr(d, "stats") and hasattr(d.stats, "cache_misses"))


def prepare_engine(chunk: Chunk, data: Dataset, grid: Grid, init: FixedInit | None = None, *,
                   in_process: bool = True, note=None) -> float | None:
    """Compile the engine's kernels, or load them from numba's cache (``cache=True``), for chunks
    like ``chunk``, before the sweep trains: returns the seconds it took (None: already prepared).

    numba compiles a kernel for each layout of its arguments, and the layouts depend on the number
    of models and of seed indices per call, the epochs and whether epochs are reported
    (``in_process``: trained in this process, with epoch reports; else as a worker trains). So the
    preparation trains one model per seed index of ``chunk`` (at least two where it has two, at
    most :data:`WARM_UP_MODELS`) the same way and throws the result away; in a fresh process
    with a cold cache that is about 30 s per layout, with a warm one about 1 s. Once it has taken
    :data:`ENGINE_NOTICE_S`, ``note(line)`` says so, and says how long it took at the end."""
    firsts = sorted(np.unique(chunk.seeds, return_index=True)[1].tolist())[:WARM_UP_MODELS]
    if firsts == [0] and len(chunk.configs) > 1:
        firsts.append(1)
    part = chunk.subset(firsts)
    key = (len(part.configs) > 1, len(set(part.seeds.tolist())), grid.epochs, in_process, init is None,
           grid.early_exit and data.balanced)
    if key in _prepared:
        return None
    import threading
    announced = threading.Event()

    def announce():
        announced.set()
        if note is not None:
            note("preparing the search engine (numba compiles it on first use, about 30 s; later runs load it "
                 "from its cache)...")

    timer = threading.Timer(ENGINE_NOTICE_S, announce)
    timer.daemon = True
    t0, compiled = time.perf_counter(), _engine_compilations()
    timer.start()
    try:
        _train_engine(part, data, grid, init, None if in_process else 1,
                      (lambda done, total: None) if in_process else None)
    finally:
        timer.cancel()
        timer.join()
    took = time.perf_counter() - t0
    _prepared.add(key)
    if announced.is_set() and note is not None:
        how = "compiled, and cached for later runs" if _engine_compilations() > compiled else "loaded from the cache"
        note(f"search engine ready in {took:.1f} s ({how})")
    return took


def run_chunks(chunks, store: ResultStore, data: Dataset, grid: Grid, *, init=None, jobs: int = 1,
               progress=None, note=None) -> list[dict]:
    """Train the runs of ``chunks`` not in ``store`` yet, storing each chunk's rows as it returns;
    returns the rows this call trained.

    ``jobs=1`` trains in this process with every numba thread, reporting epochs (so a stop
    signal is handled within one kernel call, at most 10 epochs: :func:`train_chunk`).
    Otherwise (or under a cluster backend) the chunks go through ``joblib.Parallel`` on the
    active joblib backend (loky worker processes by default; ``joblib.parallel_config("dask")``
    or ``"ray"``: a cluster), each with one numba thread, at most ``jobs`` of them on a cluster at
    once. A run's row does not depend on where its chunk ran. This process writes every row, so
    workers need no shared filesystem (and a lost worker's chunk, retried by the cluster, is
    written once). Before the first chunk trained on this machine the engine is prepared
    (:func:`prepare_engine`; ``note(line)`` for its status line).

    Two sweeps into one store: the callers plan their chunks from every run of a level (or
    round), whatever is stored, so two sweeps of one configuration cut the same chunks. Each
    chunk is claimed before it is trained (:class:`cubist.store.ChunkClaims`, keyed by its run
    ids), trained for its runs still missing and released once its rows are stored; a chunk
    another live sweep holds is left for later, then waited for and whatever is still missing
    trained. So each run is trained once; the runs another sweep stored are not in the returned
    rows (the callers read them from the store).
    """
    chunks = list(chunks)
    ids = [[run_id(c) for c in chunk.configs] for chunk in chunks]
    missing = {r for rid in ids for r in rid} - store.done()
    planned = [sum(r in missing for r in rid) for rid in ids]   # runs to train per chunk
    todo = [i for i, n in enumerate(planned) if n]
    if progress is not None:
        progress.total = sum(planned)
        progress.refresh()
    rows_out = []
    in_process = jobs <= 1 and not on_cluster()

    def advance(i: int, base=None) -> None:
        if progress is not None:
            progress.n = (progress.n if base is None else base) + planned[i]
            progress.refresh()

    def part(i: int) -> Chunk:   # the chunk's runs still missing (others may have stored some meanwhile)
        keep = [j for j, r in enumerate(ids[i]) if r in missing]
        return chunks[i] if len(keep) == len(ids[i]) else chunks[i].subset(keep)

    def finish(i: int, rows) -> None:
        store.write(rows)
        claims.release(ids[i])
        rows_out.extend(rows)

    if todo and not on_cluster():
        prepare_engine(chunks[todo[0]], data, grid, init, in_process=in_process, note=note)
    with ChunkClaims(store, missing) as claims:
        for wait in (False, True):   # first what no other sweep holds, then wait for the rest
            deferred = []

            def take(i: int, wait=wait, deferred=deferred) -> bool:
                state = claims.take(ids[i], wait=wait)
                if state == "busy":
                    deferred.append(i)
                elif state == "done":
                    advance(i)
                return state == "train"

            if in_process:
                for i in todo:
                    if not take(i):
                        continue
                    base = progress.n if progress is not None else 0
                    size = planned[i]

                    def tick(done, total, base=base, size=size):   # fractions of the chunk as epochs pass
                        if progress is not None:
                            progress.n = base + min(size * done / total, size)
                            progress.refresh()

                    finish(i, train_chunk(part(i), data, grid, init, threads=None, on_epochs=tick))
                    advance(i, base)
            else:
                tasks = ((i, part(i), data, grid, init, 1) for i in todo if take(i))
                for i, rows in map_unordered(_train_indexed, tasks, jobs):
                    finish(i, rows)
                    advance(i)
            todo = deferred
            if not todo:
                break
    return rows_out


def _progress(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="run", disable=quiet, smoothing=0.05, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total} runs [{elapsed}<{remaining}, {rate_fmt}]")


def _note(quiet: bool):
    """Status lines on stderr beside the progress bars (none when ``quiet``)."""
    if quiet:
        return None

    def note(line: str) -> None:
        import sys

        from tqdm.auto import tqdm
        tqdm.write(line, file=sys.stderr)
    return note


EARLY_EXIT = "cone+interval"  # the engine's early-exit tests (rows record it: exited rows keep their exit weights)
INIT_WIDTH = 16  # the search masks the width-16 network and keeps its init scale (ALGORITHMS.md §2)


def search_init_seed(widths, key: str, lr: float, schedule: str, k: int) -> int:
    """The init seed of the search run of mask ``key`` at grid point (lr, schedule), seed index k."""
    return run_init_seed("spiral-mlp", [int(w) for w in widths], key, float(lr), schedule, int(k))


RETRAIN_KIND = "search_retrain"   # a mask of some other run (a pruner's) trained from init: not part of the search
SEARCH_METHODS = {"search_masks": "mask", "search_widths": "dense", RETRAIN_KIND: "retrain"}   # kind -> the rows' method
MASK_KINDS = ("search_masks", RETRAIN_KIND)   # the kinds whose rows name their mask in params


@dataclass(frozen=True)
class SearchRun:
    """One run of the search, as its row's configuration records it: :meth:`to_row` is that
    configuration (hashed into the run id), :meth:`from_row` turns a stored row back into the
    run, :meth:`train` trains it again (reproducing the row).

    ``mask`` is the mask key (:func:`cubist.masks.mask_key`); a dense run (phase 1) has the dense
    mask's key. ``seed`` is the seed index k (data order); with a random init (``init_id`` None)
    the init is drawn from :func:`search_init_seed` of (widths, mask, lr, schedule, k), with a
    fixed init it is the checkpoint ``init_id``. ``grid`` holds the protocol (its ``lrs``,
    ``schedules`` and ``seeds`` are this run's point).
    """

    kind: str
    widths: tuple
    mask: str
    lr: float
    schedule: str
    seed: int
    grid: Grid = Grid()
    symmetry: str | None = None
    init_id: str | None = None
    data: DataConfig = DataConfig()

    @property
    def init_seed(self) -> int | None:
        if self.init_id is not None:
            return None
        return search_init_seed(self.widths, self.mask, self.lr, self.schedule, self.seed)

    def masks(self) -> list[np.ndarray]:
        w = self.widths
        return unpack_masks(bytes.fromhex(self.mask), [[w[l + 1], w[l]] for l in range(len(w) - 1)])

    def to_row(self, dataset_id: str) -> dict:
        """The row's configuration (``dataset_id``: the id of the data set it is trained on)."""
        random = self.init_id is None
        params = {"mask": self.mask, "symmetry": self.symmetry} if self.kind in MASK_KINDS else {}
        config = dict(kind=self.kind, method=SEARCH_METHODS[self.kind], widths=list(self.widths),
                      init_width=INIT_WIDTH if random else None,
                      init=RANDOM_INIT if random else f"checkpoint:{self.init_id}", init_seed=self.init_seed,
                      lr=float(self.lr), schedule=self.schedule, epochs=self.grid.epochs,
                      batch_size=self.grid.batch_size, momentum=self.grid.momentum,
                      weight_decay=self.grid.weight_decay, seed=int(self.seed), target_nnz=None,
                      params=params, dataset_id=dataset_id)
        named = self.data.to_row()
        if named:  # a data set other than the paper's spiral (whose rows keep their ids)
            config["data"] = named
        return config

    @classmethod
    def from_row(cls, row) -> "SearchRun":
        """The run of a stored search row (dict or DataFrame row)."""
        config = json.loads(row["config"]) if isinstance(row["config"], str) else row["config"]
        kind = config["kind"]
        if kind not in SEARCH_METHODS:
            raise ValueError(f"row {row['run_id']} is a {kind!r} row, not a search row")
        widths = tuple(int(w) for w in config["widths"])
        params = config.get("params") or {}
        if kind in MASK_KINDS:
            key = params["mask"]
        else:
            key = mask_key([np.ones((widths[l + 1], widths[l]), bool) for l in range(len(widths) - 1)])
        init = config.get("init") or RANDOM_INIT
        grid = Grid(lrs=(config["lr"],), schedules=(config["schedule"],), seeds=config["seed"] + 1,
                    epochs=config["epochs"], batch_size=config["batch_size"], momentum=config["momentum"],
                    weight_decay=config["weight_decay"])
        return cls(kind, widths, key, config["lr"], config["schedule"], config["seed"], grid,
                   params.get("symmetry"), None if init == RANDOM_INIT else init.split(":", 1)[1],
                   DataConfig.from_row(config.get("data")))

    def train(self, data: Dataset | None = None, init: "FixedInit | None" = None) -> dict:
        """Train this run again with the engine; returns its row (same ``run_id``)."""
        data = data or self.data.build()
        if (init.id if init is not None else None) != self.init_id:
            raise ValueError(f"the run starts from init {self.init_id or 'random'}; give init= that checkpoint"
                             if self.init_id else "the run starts from its own random init; give no init")
        chunk = Chunk(self.widths, [m[None] for m in self.masks()], np.array([self.lr]), [self.schedule],
                      np.array([self.seed]), [self.to_row(data.id)])
        return train_chunk(chunk, data, self.grid, init, threads=1)[0]


def _row_config(kind, widths, lr, schedule, seed, grid, data, init, symmetry, key):
    return SearchRun(kind, tuple(widths), key, lr, schedule, seed, grid, symmetry,
                     None if init is None else init.id,
                     data.config if data.config is not None else DataConfig()).to_row(data.id)


def _plan(cfg: dict, existing: dict, stored: list, planned: dict) -> bool:
    """Plan the run of ``cfg`` once (a grid with repeated values has it twice): it goes to
    ``planned`` (run id -> stored or not); a stored run's record goes to ``stored``. Returns
    whether it was new to the plan. Chunks are cut from every planned run, stored or not, so two
    sweeps of one configuration cut the same chunks (:func:`run_chunks`)."""
    rid = run_id(cfg)
    if rid in planned:
        return False
    planned[rid] = rid in existing
    if planned[rid]:
        stored.append(existing[rid])
    return True


def _stored_meanwhile(store: ResultStore, planned: dict, trained: list, kind: str) -> list[dict]:
    """Records of the planned runs that neither were stored when planned nor trained by this
    sweep: another sweep into the store trained them meanwhile (read back from the store)."""
    own = {r["run_id"] for r in trained}
    wanted = {rid for rid, stored in planned.items() if not stored and rid not in own}
    if not wanted:
        return []
    found = _stored_accuracy(store, kind)
    lost = wanted - set(found)
    if lost:
        raise RuntimeError(f"{len(lost)} runs were neither trained nor stored (e.g. {min(lost)})")
    return [found[rid] for rid in sorted(wanted)]


def _chunked(models, widths, chunk_size):
    """Group (mask, lr, schedule, seed, config[, round]) tuples into chunks, seeds kept together."""
    models = sorted(models, key=lambda m: m[3])  # models sharing a seed share the data order
    for s in range(0, len(models), chunk_size):
        part = models[s:s + chunk_size]
        yield Chunk(widths, [np.stack([m[0][l] for m in part]) for l in range(len(widths) - 1)],
                    np.array([m[1] for m in part], dtype=np.float64), [m[2] for m in part],
                    np.array([m[3] for m in part], dtype=np.int64), [m[4] for m in part],
                    [m[5] if len(m) > 5 else 0 for m in part])


# -- phase 2 ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaskRate:
    """Success of one mask (or architecture) over its inits: pooled, and at its best grid point."""

    key: str
    weight_nnz: int
    runs: int
    successes: int
    best_lr: float
    best_schedule: str
    best_runs: int
    best_successes: int
    best_acc: float

    @property
    def rate(self) -> float:
        """Best grid point's share of runs reaching the target."""
        return self.best_successes / self.best_runs if self.best_runs else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.best_successes, self.best_runs)

    def describe(self) -> str:
        lo, hi = self.interval
        return (f"{self.best_successes}/{self.best_runs} inits at lr {self.best_lr:g} {self.best_schedule} "
                f"(rate {self.rate:.3g}, 95% CI [{lo:.3g}, {hi:.3g}]; {self.successes}/{self.runs} runs overall)")


def mask_rates(records, target: float) -> dict:
    """mask key -> :class:`MaskRate` over ``records`` (dicts with mask, lr, schedule, train_acc, diverged)."""
    by_mask: dict = {}
    for r in records:
        by_mask.setdefault(r["mask"], []).append(r)
    out = {}
    for key, rs in by_mask.items():
        ok = reached_target([r["train_acc"] for r in rs], [r["diverged"] for r in rs], target)
        points: dict = {}
        for r, hit in zip(rs, ok):
            p = points.setdefault((r["lr"], r["schedule"]), [0, 0, -np.inf])
            p[0] += 1
            p[1] += int(hit)
            if not r["diverged"] and r["train_acc"] == r["train_acc"]:
                p[2] = max(p[2], r["train_acc"])
        (lr, sch), (n, k, _) = max(points.items(), key=lambda it: (it[1][1], it[1][1] / it[1][0], it[1][2],
                                                                   -it[0][0], it[0][1]))
        best_acc = max(p[2] for p in points.values())
        out[key] = MaskRate(key, int(rs[0]["weight_nnz"]), len(rs), int(ok.sum()), float(lr), sch, n, k,
                            float(best_acc))
    return out


@dataclass
class LevelStats:
    """One nnz level of phase 2: how many masks and runs, and how well its best mask does."""

    masks: int                 # masks at the level
    runs: int                  # runs trained at the level (this call and stored)
    masks_reaching: int        # masks with at least one run reaching the target
    best: MaskRate | None      # the level's best mask (highest rate, then successes, then accuracy)
    rounds: int = 1            # adaptive rounds run at the level


@dataclass
class MaskSearchResult:
    widths: tuple[int, ...]
    target: float
    sparsest_nnz: int | None          # fewest weight nnz at which some run reached the target
    masks_at_sparsest: int            # masks at that level with some run reaching it
    levels: dict                      # nnz -> LevelStats
    rows: list                        # every record of the levels searched (stored and new)
    trained: int                      # runs trained by this call
    wall_time_s: float
    inits: int = 1                    # most inits per mask and grid point (K)
    min_rate: float | None = None
    rate_nnz: int | None = None       # fewest weight nnz at which some mask's rate is >= min_rate

    @property
    def runs_at_sparsest(self) -> int:
        return self.levels[self.sparsest_nnz].runs if self.sparsest_nnz is not None else 0

    def summary(self) -> str:
        """The result in words, with the inits and runs behind it."""
        runs = sum(v.runs for v in self.levels.values())
        head = f"widths {self.widths[1:-1]}, target {self.target:g}, up to {self.inits} inits per mask and grid point"
        if self.sparsest_nnz is None:
            return f"{head}: no run reached the target ({runs} runs over {len(self.levels)} levels)"
        lv = self.levels[self.sparsest_nnz]
        text = (f"{head}: sparsest nnz reached by some run {self.sparsest_nnz} ({lv.masks_reaching} of {lv.masks} "
                f"masks, {lv.runs} runs at that level; best mask {lv.best.describe()})")
        if self.min_rate is not None:
            if self.rate_nnz is None:
                text += f"; no mask reaches it with rate >= {self.min_rate:g}"
            else:
                text += (f"; sparsest nnz with a mask at rate >= {self.min_rate:g}: {self.rate_nnz} "
                         f"({self.levels[self.rate_nnz].best.describe()})")
        return text


def _level_rounds(grid: Grid, adaptive: Adaptive | None) -> list[int]:
    if adaptive is None:
        return [grid.seeds]
    if adaptive.inits[-1] != grid.seeds:
        raise ValueError(f"the adaptive rounds end at {adaptive.inits[-1]} inits, but the grid has "
                         f"{grid.seeds} seeds: they must agree")
    return list(adaptive.inits)


def _ranked(keys, rates: dict) -> list:
    """Mask keys ranked for the next adaptive round: successes, then best accuracy, then key."""
    def score(k):
        r = rates.get(k)
        return (-(r.successes if r else 0), -(r.best_acc if r else -np.inf), k)
    return sorted(keys, key=score)


def search_masks(hidden, target: float = DEFAULT_TARGET, grid: Grid = Grid(), *, store: ResultStore,
                 data: Dataset | None = None, symmetry: str = "orbits", init: FixedInit | None = None,
                 exhaustive: bool = False, max_nnz: int | None = None, chunk_size: int = 512,
                 jobs: int = 1, quiet: bool = False, log=print, adaptive: Adaptive | None = None,
                 min_rate: float | None = None) -> MaskSearchResult:
    """Phase 2 for hidden widths ``hidden`` (e.g. ``(3, 3, 3)``); see the module docstring.

    Sparsest first, a level stops the search once some run reaches ``target`` (``min_rate``:
    once some mask reaches it with rate >= ``min_rate``), unless ``exhaustive`` or ``max_nnz``.
    """
    from .enumerate import count_masks, enumerate_masks

    t0 = time.perf_counter()
    data = data or Dataset.spiral()
    widths = (data.X.shape[1], *hidden, 1)
    if init is not None and symmetry != "labelled":
        raise ValueError("a fixed init makes permuted masks different: use symmetry='labelled'")
    if init is not None:
        init.sliced(widths)  # fails early when the checkpoint does not fit the widths
    if min_rate is not None and not 0 < min_rate <= 1:
        raise ValueError(f"min_rate must be in (0, 1], got {min_rate}")
    rounds = _level_rounds(grid, adaptive)
    counts = count_masks(widths, symmetry=symmetry)
    levels = sorted(counts)
    if max_nnz is not None:
        levels = [n for n in levels if n <= max_nnz]
    existing = _stored_accuracy(store)
    grid_points = list(itertools.product(grid.lrs, grid.schedules))

    def plan(masks_of, chosen, done_inits, inits, rnd, stored):
        """The models of ``chosen`` masks for seed indices ``done_inits..inits-1`` (stored runs'
        records go to ``stored``) and the plan (run id -> stored)."""
        models, planned = [], {}
        for key in chosen:
            for (lr, sch), k in itertools.product(grid_points, range(done_inits, inits)):
                cfg = _row_config("search_masks", widths, lr, sch, k, grid, data, init, symmetry, key)
                if _plan(cfg, existing, stored, planned):
                    models.append((masks_of[key], lr, sch, k, cfg, rnd))
        return models, planned

    def train(chunks, planned, desc):
        bar = _progress(len(planned) - sum(planned.values()), desc, quiet)
        with bar:
            return run_chunks(chunks, store, data, grid, init=init, jobs=jobs, progress=bar, note=_note(quiet))

    # Levels fixed up front (every level, or every one up to max_nnz, in one round): no level
    # waits for the one before, so the workers never idle at a level's last chunks. Each level
    # is cut into the same chunks as when trained alone.
    fixed = len(rounds) == 1 and (exhaustive or max_nnz is not None) and len(levels) > 1
    fixed_rows = {}
    if fixed:
        chunks, plans = [], {}
        for nnz in levels:
            masks_of = {mask_key(m): m for m in enumerate_masks(widths, symmetry=symmetry, nnz=nnz)}
            fixed_rows[nnz] = []
            models, plans[nnz] = plan(masks_of, list(masks_of), 0, rounds[0], 0, fixed_rows[nnz])
            chunks += _chunked(models, widths, chunk_size)
        every = {rid: done for p in plans.values() for rid, done in p.items()}
        new = train(chunks, every, f"nnz {levels[0]}-{levels[-1]}")
        level_of = {rid: nnz for nnz, p in plans.items() for rid in p}
        # one read of the store for every level's runs another sweep stored meanwhile
        for r in [_acc_record(r) for r in new] + _stored_meanwhile(store, every, new, "search_masks"):
            fixed_rows[level_of[r["run_id"]]].append(r)
    result_levels, all_rows, trained = {}, [], (len(new) if fixed else 0)
    sparsest = rate_nnz = None
    for nnz in levels:
        if fixed:
            level_rows = fixed_rows[nnz]
        else:
            masks_of = {mask_key(m): m for m in enumerate_masks(widths, symmetry=symmetry, nnz=nnz)}
            level_rows, chosen, done_inits = [], list(masks_of), 0
            for rnd, inits in enumerate(rounds):
                if rnd > 0:
                    rates = mask_rates(level_rows, target)
                    chosen = _ranked(chosen, rates)[:max(1, math.ceil(len(chosen) * adaptive.keep))]
                models, planned = plan(masks_of, chosen, done_inits, inits, rnd, level_rows)
                new = train(list(_chunked(models, widths, chunk_size)), planned,
                            f"nnz {nnz}" + (f" round {rnd}" if len(rounds) > 1 else ""))
                trained += len(new)
                level_rows += [_acc_record(r) for r in new] + _stored_meanwhile(store, planned, new, "search_masks")
                done_inits = inits
        all_rows += level_rows
        rates = mask_rates(level_rows, target)
        best = max(rates.values(), key=lambda r: (r.rate, r.best_successes, r.best_acc, r.key), default=None)
        reaching = sum(r.successes > 0 for r in rates.values())
        result_levels[nnz] = LevelStats(counts[nnz], len(level_rows), reaching, best, len(rounds))
        log(f"nnz {nnz}: {counts[nnz]} masks, {len(level_rows)} runs, {reaching} masks reach {target:.4g}"
            + (f"; best {best.describe()}" if best is not None and best.successes else ""))
        if reaching and sparsest is None:
            sparsest = nnz
        if min_rate is not None and rate_nnz is None and best is not None and best.rate >= min_rate:
            rate_nnz = nnz
        if not exhaustive and max_nnz is None and sparsest is not None and (min_rate is None or rate_nnz is not None):
            break
    return MaskSearchResult(widths, target, sparsest, result_levels[sparsest].masks_reaching if sparsest else 0,
                            result_levels, all_rows, trained, time.perf_counter() - t0, rounds[-1], min_rate,
                            rate_nnz)


def _acc_record(row) -> dict:
    params = json.loads(row["params"])
    return {"run_id": row["run_id"], "train_acc": row["train_acc"], "diverged": row["diverged"],
            "mask": params.get("mask"), "lr": row["lr"], "schedule": row["schedule"], "seed": row["seed"],
            "init_seed": row["init_seed"], "weight_nnz": row["weight_nnz"], "heldout_acc": row["heldout_acc"],
            "widths": list(row["widths"])}


def _stored_accuracy(store: ResultStore, kind: str = "search_masks") -> dict:
    df = store.load(["kind", "params", "train_acc", "diverged", "lr", "schedule", "seed", "init_seed",
                     "weight_nnz", "heldout_acc", "widths"])
    df = df[df["kind"] == kind]
    return {r["run_id"]: _acc_record(r) for r in df.to_dict("records")}


def masks_reaching(records, target) -> dict:
    """mask key -> best record, over the masks with some non-diverged run reaching ``target``."""
    best = {}
    for r in records:
        if not reached_target(r["train_acc"], r["diverged"], target):
            continue
        if r["mask"] not in best or r["train_acc"] > best[r["mask"]]["train_acc"]:
            best[r["mask"]] = r
    return best


# -- phase 1 ------------------------------------------------------------------------------
@dataclass
class WidthSearchResult:
    target: float
    reaching: list          # hidden width tuples with some run reaching the target
    by_weights: list        # the reaching architectures with the fewest weights
    by_units: list          # the reaching architectures with the fewest hidden units
    pareto: list            # reaching architectures not dominated width by width
    rows: list
    trained: int
    wall_time_s: float
    rates: dict = field(default_factory=dict)  # hidden widths -> MaskRate over the architecture's inits
    inits: int = 1


def dense_param_count(widths) -> int:
    """Parameters of the dense MLP ``widths``: every weight and every bias (the output's too)."""
    widths = [int(w) for w in widths]
    return dense_weight_count(widths) + sum(widths[1:])


def phase1_architectures(in_dim: int, max_width: int = 16, min_width: int = 1, depth: int = 3,
                         params_below: int | None = None) -> list[tuple[int, ...]]:
    """The hidden widths phase 1 trains: every ``depth``-tuple of ``min_width..max_width``, with
    ``params_below`` only those whose dense network (``in_dim`` inputs, one output) has fewer
    parameters than that (:func:`dense_param_count`)."""
    archs = itertools.product(range(min_width, max_width + 1), repeat=depth)
    if params_below is None:
        return list(archs)
    return [h for h in archs if dense_param_count((in_dim, *h, 1)) < params_below]


def search_widths(target: float = DEFAULT_TARGET, grid: Grid = Grid(), *, store: ResultStore, data: Dataset | None = None,
                  max_width: int = 16, min_width: int = 1, depth: int = 3, init: FixedInit | None = None,
                  params_below: int | None = None, jobs: int = 1, quiet: bool = False,
                  log=print) -> WidthSearchResult:
    """Phase 1: every dense architecture with ``depth`` hidden layers of ``min_width..max_width`` units,
    each from ``grid.seeds`` independent inits at every grid point (its success rate over inits).

    ``init``: one fixed init for every run (the seed index gives the data order only);
    ``params_below``: only the architectures with fewer parameters (weights and biases) than
    this (:func:`phase1_architectures`; the paper's fixed-init phase 1: below the dense benchmark)."""
    t0 = time.perf_counter()
    data = data or Dataset.spiral()
    if not 1 <= min_width <= max_width:
        raise ValueError(f"need 1 <= min_width <= max_width, got {min_width}, {max_width}")
    archs = phase1_architectures(data.X.shape[1], max_width, min_width, depth, params_below)
    if init is not None and archs:  # fails early when the checkpoint does not cover the widest one
        init.sliced((data.X.shape[1], *(max(h[l] for h in archs) for l in range(depth)), 1))
    existing = _stored_accuracy(store, "search_widths")
    chunks, rows, planned = [], [], {}
    for hidden in archs:
        widths = (data.X.shape[1], *hidden, 1)
        dense = [np.ones((widths[l + 1], widths[l]), bool) for l in range(len(widths) - 1)]
        key = mask_key(dense)
        models = []
        for lr, sch, seed in grid.points():
            cfg = _row_config("search_widths", widths, lr, sch, seed, grid, data, init, None, key)
            if _plan(cfg, existing, rows, planned):
                models.append((dense, lr, sch, seed, cfg))
        chunks += list(_chunked(models, widths, 512))
    with _progress(len(planned) - sum(planned.values()), "widths", quiet) as bar:
        new = run_chunks(chunks, store, data, grid, init=init, jobs=jobs, progress=bar, note=_note(quiet))
    rows += [_acc_record(r) for r in new] + _stored_meanwhile(store, planned, new, "search_widths")
    for r in rows:
        r["mask"] = tuple(int(w) for w in r["widths"][1:-1])
    rates = mask_rates(rows, target)
    reach = sorted(h for h, r in rates.items() if r.successes > 0)
    full = lambda h: (data.X.shape[1], *h, 1)  # noqa: E731
    by_w = _argmins(reach, lambda h: dense_weight_count(full(h)))
    by_u = _argmins(reach, sum)
    pareto = [h for h in reach if not any(o != h and all(a <= b for a, b in zip(o, h)) for o in reach)]
    if reach:
        log(f"{len(reach)} architectures reach {target:.4g} in some of {grid.seeds} inits per grid point; "
            f"fewest weights: {by_w} ({dense_weight_count(full(by_w[0]))}; {rates[by_w[0]].describe()}); "
            f"fewest units: {by_u} ({sum(by_u[0])})")
    else:
        log(f"no architecture reached {target:.4g}")
    return WidthSearchResult(target, reach, by_w, by_u, pareto, rows, len(new), time.perf_counter() - t0,
                             rates, grid.seeds)


# -- the init of the best phase-1 run (the fixed-init experiments) -------------------------------
BEST_RUN_RULE = ("the highest train accuracy among the architecture's non-diverged phase-1 runs with a random init; "
                 "ties: the lowest final training loss, then the smallest run id")


def best_phase1_run(rows, hidden) -> dict | None:
    """The best phase-1 run of hidden widths ``hidden`` among ``rows`` (a DataFrame or dicts with
    ``run_id``, ``kind``, ``widths``, ``init``, ``init_seed``, ``train_acc``, ``diverged``,
    ``final_loss``), by :data:`BEST_RUN_RULE`; None when there is none. Only random-init runs
    count: their init is redrawn from the recorded seed."""
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    hidden = [int(h) for h in hidden]

    def finite(v) -> bool:
        return v is not None and v == v and abs(v) != float("inf")

    eligible = [r for r in rows if r["kind"] == "search_widths" and [int(w) for w in r["widths"]][1:-1] == hidden
                and (r.get("init") or RANDOM_INIT) == RANDOM_INIT and r.get("init_seed") is not None
                and r["init_seed"] == r["init_seed"] and not r["diverged"] and finite(r["train_acc"])]
    if not eligible:
        return None
    return min(eligible, key=lambda r: (-r["train_acc"], r["final_loss"] if finite(r.get("final_loss")) else np.inf,
                                        r["run_id"]))


@dataclass
class BestInit:
    """What :func:`best_init` found and saved."""

    row: dict            # the best phase-1 run's stored row
    init: FixedInit      # its width-16 init, as saved
    path: str
    reproduced: dict | None   # the run retrained from the checkpoint (None: not checked)


CHECKS = ("exact", "close", "off")
CLOSE_ACC = 0.02        # --check close: accuracies at most 2 points apart
CLOSE_LOSS = 0.01       # --check close: final losses at most 1% apart (relative)
CLOSE_WEIGHTS = 0.05    # --check close: final weights at most 5% apart (relative L2 distance)


def best_init(store: ResultStore | str, hidden, out: str, *, target: float | None = None,
              check: bool | str = True, log=print) -> BestInit:
    """Save, as a checkpoint for ``--init-checkpoint``, the width-16 init behind the best phase-1
    run of hidden widths ``hidden`` in ``store`` (:func:`best_phase1_run`, :data:`BEST_RUN_RULE`).

    The run started from the top-left blocks of ``init_weights(wide, init_width, init_seed)``,
    ``wide`` its widths with every hidden layer widened to the row's ``init_width`` (16), the
    rule the engine draws every random init by; that wide init is what is saved. ``check``
    (``"exact"`` or True, the default): first retrain the run from the checkpoint (the run a
    fixed-init phase 1 trains at that grid point and seed index) and require the stored row's
    accuracies, loss and weights bit for bit (a ``RuntimeError`` otherwise; nothing is written).
    Rows are bit for bit only on the CPU model that made them (the engine label's suffix), so on
    another one ``"close"`` requires the same divergence flag, accuracies within
    :data:`CLOSE_ACC`, a final loss within :data:`CLOSE_LOSS` and final weights within
    :data:`CLOSE_WEIGHTS` (relative): the best (3,3,3) run of ``results/search_widths`` (made on
    an Intel Xeon) retrained on an AMD EPYC came back 3.7e-4 apart in loss and 0.0026 in weights,
    where the other (3,3,3) runs' final weights are 1.0 to 1.2 apart from its own (other inits).
    ``"off"`` or False: no retraining. ``target``: require that the run reached it. The
    checkpoint's ``source`` records the store, run id, init seed, grid point and accuracy of the
    run, the check's mode and the run id of the reproduction. Written atomically."""
    import dataclasses
    import os

    from cubist import model
    from cubist.checkpoint import init_id, save_checkpoint
    path = store.path if isinstance(store, ResultStore) else os.fspath(store)
    store = store if isinstance(store, ResultStore) else ResultStore(path, heal=False)   # read only
    hidden = tuple(int(h) for h in hidden)
    df = store.load(["kind", "widths", "init", "init_seed", "train_acc", "diverged", "final_loss"])
    best = best_phase1_run(df, hidden)
    name = ",".join(map(str, hidden))
    if best is None:
        raise ValueError(f"{path} holds no phase-1 run of widths {name} with a random init (cubist search widths)")
    row = store.load().set_index("run_id", drop=False).loc[best["run_id"]].to_dict()
    if target is not None and not reached_target(row["train_acc"], row["diverged"], target):
        raise ValueError(f"the best phase-1 run of widths {name} in {path} ({row['run_id']}) reaches "
                         f"{row['train_acc']:.4f}, below the target {target:g}")
    mode = {True: "exact", False: "off"}.get(check, check)
    if mode not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(CHECKS)}, got {check!r}")
    retrain = mode != "off"
    run = SearchRun.from_row(row)
    data = run.data.build() if retrain else None
    if retrain and data.id != row["dataset_id"]:
        raise ValueError(f"run {row['run_id']} was trained on data set {row['dataset_id']}, which its configuration "
                         f"does not rebuild (it gives {data.id})")
    config = json.loads(row["config"])
    init_width = config.get("init_width") or INIT_WIDTH
    wide = (run.widths[0], *(max(init_width, d) for d in run.widths[1:-1]), run.widths[-1])
    weights = [(w.numpy(), b.numpy()) for w, b in model.init_weights(wide, init_width, int(row["init_seed"]))]
    init = FixedInit(weights, init_id(weights))
    reproduced, verdict = None, ""
    if retrain:
        reproduced = dataclasses.replace(run, init_id=init.id).train(data, init)
        verdict = _check_reproduction(row, reproduced, mode)
    source = {"store": path, "run_id": row["run_id"], "init_seed": int(row["init_seed"]), "kind": row["kind"],
              "widths": [int(w) for w in run.widths], "init_width": int(init_width), "lr": float(run.lr),
              "schedule": run.schedule, "seed": int(run.seed), "epochs": int(run.grid.epochs),
              "train_acc": float(row["train_acc"]), "dataset_id": row["dataset_id"], "rule": BEST_RUN_RULE,
              "reproduced_by": reproduced["run_id"] if reproduced is not None else None, "check": mode}
    init.source = source
    save_checkpoint(out, weights, widths=wide, seed=int(row["init_seed"]), source=source)
    log(f"best phase-1 run of widths {name} in {path}: {row['run_id']} (train accuracy {row['train_acc']:.4f}, "
        f"lr {run.lr:g} {run.schedule}, seed index {run.seed}, init seed {row['init_seed']})"
        + (f"; retrained from the checkpoint: {verdict}" if retrain else ""))
    log(f"wrote {out} (init checkpoint {init.id}, widths {','.join(map(str, wide))})")
    return BestInit(row, init, out, reproduced)


def _check_reproduction(row: dict, again: dict, mode: str) -> str:
    """best-init's check of the retrained run ``again`` against the stored ``row`` (see
    :func:`best_init`); a ``RuntimeError`` naming the first column that fails, else the verdict."""
    def same(a, b) -> bool:
        return a == b or (a != a and b != b) or (a is None and b is None)

    def fail(col, a, b):
        hint = (" (rows are bit for bit only on the CPU model that made them: the stored row's engine is "
                f"{row.get('engine')}, this machine's {again.get('engine')}; --check close compares within "
                "tolerances)" if mode == "exact" and row.get("engine") != again.get("engine") else "")
        raise RuntimeError(f"run {row['run_id']} retrained from its init checkpoint gives {col} {a} "
                           f"(stored: {b}){hint}: not saved")

    if mode == "exact":
        for col in ("train_acc", "heldout_acc", "final_loss", "diverged", "weights"):
            a, b = again[col], row[col]
            if col == "weights" and b is None:   # a store that kept no weights
                continue
            if not same(a, b):
                fail(col, *(("other weights", "other weights") if col == "weights" else (a, b)))
        return "identical row"
    if bool(again["diverged"]) != bool(row["diverged"]):
        fail("diverged", again["diverged"], row["diverged"])
    for col in ("train_acc", "heldout_acc"):
        if not same(again[col], row[col]) and not abs(again[col] - row[col]) <= CLOSE_ACC:
            fail(col, again[col], f"{row[col]}; more than {CLOSE_ACC:g} apart")
    a, b = again["final_loss"], row["final_loss"]
    rel = 0.0 if same(a, b) else abs(a - b) / max(abs(b), 1e-300)
    if not rel <= CLOSE_LOSS:
        fail("final_loss", a, f"{b}; {rel:.3g} apart, relative, more than {CLOSE_LOSS:g}")
    dist = "no stored weights"
    if row["weights"] is not None:
        wa, wb = (np.frombuffer(w, dtype=np.float32).astype(np.float64) for w in (again["weights"], row["weights"]))
        d = float(np.linalg.norm(wa - wb) / max(np.linalg.norm(wb), 1e-300)) if wa.shape == wb.shape else np.inf
        if not d <= CLOSE_WEIGHTS:
            fail("weights", "other weights", f"{d:.3g} apart, relative L2, more than {CLOSE_WEIGHTS:g}")
        dist = f"weights {d:.2g}"
    return (f"close (train accuracy {again['train_acc']:.4f} against {row['train_acc']:.4f}; apart, relative: "
            f"final loss {rel:.2g}, {dist}; engines {again.get('engine')} and {row.get('engine')})")


# -- a mask alone, trained from the initialisation ---------------------------------------------
def retrain_from_init(widths, masks, grid: Grid = Grid(), *, data: Dataset | None = None,
                      init_width: int | None = INIT_WIDTH, threads: int | None = None,
                      init: FixedInit | None = None, store: ResultStore | None = None):
    """Train one mask from fresh inits on every grid point, exactly as the search trains masks.

    The question it answers about a pruned network: is its *mask* enough to reach the target, or
    does it need the weights pruning left it with (rewound, or trained on through cycles)? Run
    (lr, schedule, k) of ``grid`` starts from its own init, ``init_weights(widths, init_width,
    search_init_seed(widths, mask key, lr, schedule, k))``: the init the search gives that mask
    at that grid point, so a search row is reproduced exactly. Returns a DataFrame, one row per
    run: ``lr``, ``schedule``, ``seed``, ``init_seed``, ``train_acc``, ``heldout_acc``,
    ``final_loss``, ``diverged``. ``init``: every run from that fixed init instead (the
    fixed-init search's rule; ``init_seed`` is then None and the seed index gives the data order).

    ``store``: also keep the runs, as rows of kind ``search_retrain`` (method ``retrain``; the
    mask itself, ``symmetry`` ``labelled``, in ``params``): the search's configuration but another
    kind, so no search table counts them as searched, while the audit's mask-or-weights column
    reads them beside the search's rows of the same mask. Runs already stored are not trained
    again (their stored values are returned), and the rows are those the search would store for
    the same mask and grid point, apart from kind and run id.
    """
    import pandas as pd

    from .engine import train_masks
    data = data or Dataset.spiral()
    widths = tuple(int(w) for w in widths)
    masks = [np.asarray(m) != 0 for m in masks]
    key = mask_key(masks)
    points = grid.points()
    init_seeds = [search_init_seed(widths, key, lr, sch, k) if init is None else None for lr, sch, k in points]
    cols = ["lr", "schedule", "seed", "init_seed", "train_acc", "heldout_acc", "final_loss", "diverged"]
    if store is not None:
        models = [(masks, lr, sch, k, _row_config(RETRAIN_KIND, widths, lr, sch, k, grid, data, init, "labelled",
                                                  key)) for lr, sch, k in points]
        ids = [run_id(m[4]) for m in models]
        trained = run_chunks(list(_chunked(models, widths, len(models))), store, data, grid, init=init)
        got = pd.DataFrame([{c: r.get(c) for c in ["run_id"] + cols} for r in trained],
                           columns=["run_id"] + cols).set_index("run_id")
        if not set(ids) <= set(got.index):   # stored before: read them back (only then the whole store)
            got = store.load(cols).set_index("run_id")
        missing = [i for i in ids if i not in got.index]
        if missing:
            raise RuntimeError(f"{len(missing)} retrain runs were neither trained nor stored (e.g. {missing[0]})")
        out = got.loc[ids, cols].reset_index(drop=True)
        out["init_seed"] = init_seeds   # as the search's rows hold it (None with a fixed init)
        return out.astype({"train_acc": float, "final_loss": float, "diverged": bool})
    res = train_masks(data.X, data.y, widths, masks, init=None if init is None else init.sliced(widths),
                      lrs=[p[0] for p in points], schedules=[p[1] for p in points], seeds=[p[2] for p in points],
                      epochs=grid.epochs, batch_size=grid.batch_size, momentum=grid.momentum,
                      weight_decay=grid.weight_decay, init_width=init_width, X_heldout=data.X_heldout,
                      y_heldout=data.y_heldout, threads=threads,
                      init_seeds=None if init is not None else init_seeds,
                      early_exit=grid.early_exit and data.balanced)
    return pd.DataFrame({
        "lr": [p[0] for p in points], "schedule": [p[1] for p in points], "seed": [p[2] for p in points],
        "init_seed": init_seeds, "train_acc": res.train_acc.astype(float),
        "heldout_acc": res.heldout_acc.astype(float) if res.heldout_acc is not None else np.nan,
        "final_loss": res.final_loss.astype(float), "diverged": res.diverged.astype(bool)}, columns=cols)


def _argmins(items, key):
    if not items:
        return []
    best = min(key(i) for i in items)
    return [i for i in items if key(i) == best]


__all__ = ["Grid", "Adaptive", "FixedInit", "save_init", "search_masks", "search_widths", "MaskSearchResult",
           "best_init", "best_phase1_run", "BEST_RUN_RULE", "BestInit", "dense_param_count", "phase1_architectures",
           "WidthSearchResult", "MaskRate", "LevelStats", "mask_rates", "masks_reaching",
           "search_init_seed", "retrain_from_init", "SearchRun", "RETRAIN_KIND", "MASK_KINDS"]
