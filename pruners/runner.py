"""The spiral pruning sweep: every target x lr x schedule x seed, R runs trained as one model.

Each run follows the paper's protocol (Zhang & Papyan, ICML 2024; :mod:`cubist.train`): its own
random init, :func:`cubist.model.init_weights` ``(widths, 16, init_seed)`` (sub-networks cut from
the width-16 default init) with ``init_seed`` = :func:`cubist.model.run_init_seed` of the run's
identity (method and its hyper-parameters, widths, budget, lr, schedule, seed index ``k``), so no
two runs share an init, whatever chunk trains them; the seed also drives the method's own
randomness (random masks, score batches). The data order is ``epoch_permutation(k, epoch)``,
shared by the runs of one seed index; the learning rate comes from ``lr_at``.

Fixed init (``init_checkpoint``, ``cubist prune --init-checkpoint FILE``; the paper's fixed-init
experiments, ALGORITHMS.md §3): every run starts from the width-W top-left blocks of that one
saved width-16 init (:class:`cubist.checkpoint.FixedInit`, as the search's fixed init does), so
the seed index ``k`` repeats over the data order only (the method's own randomness still comes
from the seed of the run's identity). Rows record ``init = "checkpoint:<id>"``, ``init_seed``
and ``init_width`` null; the run ids of random-init rows are unchanged. Rebuilding such a row
(:meth:`Run.from_row`, :func:`rerun`) needs the checkpoint file (``init_checkpoint=``), whose
id must match. Runs that can
share a procedure (the same :meth:`~pruners.base.MethodConfig.retrain_rounds`; for IMP/LRR: the
same number of rounds) are packed into chunks of up to ``chunk`` replicas of one
:class:`~pruners.layers.BatchedMLP`; the ``single`` engine runs each alone as a plain
``nn.Linear`` MLP with ``torch.optim.SGD`` (the reference the batched engine is tested against,
and the benchmark's baseline). What the procedure will do (rounds, epochs, errors) the runner
asks the method's config; it never reads a procedure's fields.

One row per run (:func:`cubist.store.make_row`, kind ``prune``): the method's hyper-parameters
in ``params``, ``target_nnz = F``, metrics on the training set and the held-out set, the mask
and the final (masked) weights.

Resume, bit for bit. A batched model's replicas share their matrix products, so a run's last
bits depend on the chunk that trains it. The chunks are therefore planned from every run of the
configuration (:func:`build_runs`, then :func:`sweep_chunks`: a function of the configuration,
the device type and ``jobs`` alone), never from what the store already holds. A resume skips
the chunks whose runs are all stored and trains every other chunk whole, as planned: its stored
runs are trained again beside the missing ones (and not written again), so every row equals the
uninterrupted sweep's bit for bit. An uninterrupted sweep is chunked as before this rule. To
resume bit for bit, resume with the same ``chunk``, device type and ``jobs`` (as ``cubist prune
--jobs``; a cluster backend cuts its chunks as ``jobs`` loky workers would).

Two sweeps into one store. Before a chunk is trained the sweep claims it in the store
(:class:`cubist.store.ChunkClaims`, keyed by :func:`cubist.store.chunk_key`, released once its rows are
written) and checks the store again; a chunk another live sweep holds is left for later, and
once the rest is done the sweep waits for each such claim and trains what is still missing. So
two identical sweeps started at once share the work, each run trained once, and both return
with every run stored (a sweep killed meanwhile loses its claims at once: the other trains them).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from cubist.checkpoint import FixedInit
from cubist.masks import dense_weight_count, mask_counts
from cubist.model import RANDOM_INIT, check_widths, run_init_seed
from cubist.data import DEFAULT_DATA, HELDOUT_KINDS, DataConfig, Dataset, dataset_id
from cubist.dispatch import map_unordered, on_cluster
from cubist.store import ChunkClaims, ResultStore, StoreWriter, canonical_config, make_row, run_id
from cubist.train import SCHEDULES, TrainConfig, protocol_field, resolve_device

from .base import MethodConfig, PruneContext, get_method
from .layers import BatchedMLP, plain_mlp, prunable_layers
from .procedures import run_method
from .train import Trainer

ENGINES = ("batched", "single")
ENGINE_NAMES = {"batched": "torch-batched", "single": "torch-single"}


@dataclass(frozen=True)
class SweepConfig:
    """A pruning sweep on the Cubist Spiral (one method; the grid is every combination)."""

    method: str = field(default="gmp", metadata={"help": "pruning method (see cubist prune --help)", "cli": False})
    widths: tuple = field(default=(2, 16, 16, 16, 1), metadata={"help": "layer sizes input..output", "cli": False})
    nnz: tuple = field(default=(15, 20, 25, 30, 40, 50, 65), metadata={"help": "target weight nonzeros F"})
    lrs: tuple = field(default=(0.05, 0.1, 0.2), metadata={"help": "learning rates"})
    schedules: tuple = field(default=SCHEDULES, metadata={"help": "learning-rate schedules", "choices": SCHEDULES})
    seeds: int = field(default=1, metadata={"help": "independent inits per grid point (seed indices 0..K-1)"})
    epochs: int = protocol_field("epochs")
    batch_size: int = protocol_field("batch_size")
    momentum: float = protocol_field("momentum")
    weight_decay: float = protocol_field("weight_decay")
    init_width: int = field(default=16, metadata={"help": "hidden width of the init the network is cut from"})
    init_checkpoint: str | None = field(default=None, metadata={
        "help": "a saved width-16 init (cubist search init / best-init): every run starts from its width-W slice "
                "and the seed index gives the data order only (default: every run its own random init)",
        "cli": False})   # cubist prune --init-checkpoint FILE (a file, not a value of the rows)
    method_params: dict = field(default_factory=dict, metadata={"help": "method hyper-parameters (config fields)",
                                                                "cli": False})
    data: str = field(default=DEFAULT_DATA, metadata={"help": "data set of the registry (cubist.data)"})
    data_recipe: tuple = field(default=(), metadata={"help": "recipe fields of the data set that differ from its "
                                                             "defaults, as (name, value) pairs", "cli": False})
    heldout: str = field(default="between", metadata={"help": "held-out companion set", "choices": HELDOUT_KINDS})
    subsample: int = field(default=1, metadata={"help": "use every k-th spiral point (tests; 1 = the paper's data)",
                                                "cli": False})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda", "cli": False})
    engine: str = field(default="batched", metadata={"help": "batched: R runs as one model; single: one plain MLP "
                                                             "at a time", "choices": ENGINES})
    chunk: int = field(default=0, metadata={"help": "replicas per batched model (0: auto, 256 on CPU, 2048 on CUDA)"})
    keep_weights: bool = field(default=True, metadata={"help": "store the final weights in each row", "flag": "weights"})

    def __post_init__(self):
        object.__setattr__(self, "widths", check_widths(self.widths))
        # a value given twice is one grid point, trained once (the first occurrence's order kept)
        object.__setattr__(self, "nnz", tuple(dict.fromkeys(int(v) for v in self.nnz)))
        object.__setattr__(self, "lrs", tuple(dict.fromkeys(float(v) for v in self.lrs)))
        object.__setattr__(self, "schedules", tuple(dict.fromkeys(self.schedules)))
        for s in self.schedules:
            if s not in SCHEDULES:
                raise ValueError(f"unknown schedule {s!r}; choose from {', '.join(SCHEDULES)}")
        if not self.nnz or not self.lrs or not self.schedules:
            raise ValueError("nnz, lrs and schedules need at least one value each")
        if any(v <= 0 or not math.isfinite(v) for v in self.lrs):
            raise ValueError(f"learning rates must be positive, got {self.lrs}")
        if self.seeds < 1 or self.epochs < 1 or self.batch_size < 1 or self.subsample < 1 or self.chunk < 0:
            raise ValueError("seeds, epochs, batch_size and subsample must be >= 1, chunk >= 0")
        if not 0 <= self.momentum < 1 or not self.weight_decay >= 0:
            raise ValueError(f"need momentum in [0, 1) and weight_decay >= 0, got {self.momentum} and "
                             f"{self.weight_decay}")
        data_config(self)  # validates the data set, its recipe and held-out kind
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose from {', '.join(ENGINES)}")
        total = dense_weight_count(self.widths)
        bad = [f for f in self.nnz if not 1 <= f <= total]
        if bad:
            raise ValueError(f"targets {bad} outside [1, {total}] (weights of widths {self.widths})")
        object.__setattr__(self, "_fixed_init", self._load_init())
        mcfg = self._typed_method_config()  # validates the method and its parameters
        object.__setattr__(self, "_method_config", mcfg)
        dense = sum(self.layer_weights()) - sum(mcfg.pruned(self.layer_weights()))
        low = [f for f in self.nnz if f <= dense]
        if low:
            raise ValueError(f"targets {low} leave no weight to the pruned layers: the dense last layer "
                             f"holds {dense} (prunable=hidden)")

    def method_config(self) -> MethodConfig:
        """The method's typed config (built once, when the sweep config is)."""
        return self._method_config

    def fixed_init(self) -> FixedInit | None:
        """The init every run starts from (read once, when the sweep config is); None: random inits."""
        return self._fixed_init

    def _load_init(self) -> FixedInit | None:
        if self.init_checkpoint is None:
            return None
        if self.init_width != 16:
            raise ValueError(f"init_width {self.init_width} applies to random inits; the init checkpoint "
                             f"{self.init_checkpoint} carries its own")
        init = FixedInit.load(self.init_checkpoint)
        init.sliced(self.widths)   # it must cover the widths
        return init

    def _typed_method_config(self) -> MethodConfig:
        cls = get_method(self.method)
        known = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = set(self.method_params) - known
        if unknown:
            raise ValueError(f"method {self.method} has no parameter(s) {', '.join(sorted(unknown))}; "
                             f"it takes {', '.join(sorted(known))}")
        return cls.Config(**self.method_params)

    def layer_weights(self) -> list[int]:
        """Weights per layer of one network, input to output."""
        return [a * b for a, b in zip(self.widths, self.widths[1:])]


@dataclass(frozen=True)
class Run:
    """One run of the sweep: its identity (``config`` for :func:`make_row`) and its settings."""

    config: dict
    target: int
    lr: float
    schedule: str
    seed: int
    method_seed: int | None = None   # seeds the method's own randomness (None: the init seed)

    @property
    def init_seed(self) -> int | None:
        """The seed of the run's own random init (None: it starts from an init checkpoint)."""
        return self.config["init_seed"]

    @property
    def init_id(self) -> str | None:
        """The id of the init checkpoint the run starts from (None: its own random init)."""
        init = self.config.get("init") or RANDOM_INIT
        return None if init == RANDOM_INIT else init.split(":", 1)[1]

    @property
    def rng_seed(self) -> int:
        """The seed of the method's own randomness (random masks, score batches)."""
        return self.method_seed if self.method_seed is not None else self.init_seed

    @property
    def run_id(self) -> str:
        return run_id(self.config)

    def to_row(self) -> dict:
        """The row's configuration (hashed into its run id)."""
        return self.config

    @classmethod
    def from_row(cls, row, **overrides) -> tuple["Run", SweepConfig]:
        """The run of a stored pruner row and the one-run sweep that trains it
        (``overrides``: how, not what, is run, e.g. ``engine="single"``; a row from an init
        checkpoint needs ``init_checkpoint=`` the file)."""
        run, cfg, _ = _rebuild(row, overrides)
        return run, cfg


def _rebuild(row, overrides: dict) -> tuple[Run, SweepConfig, Dataset]:
    """:meth:`Run.from_row`, with the data it was built on."""
    cfg = sweep_config_from_row(row, **overrides)
    data = load_data(cfg)
    runs = [r for r in build_runs(cfg, data) if r.run_id == row["run_id"]]
    if not runs:
        raise ValueError(f"row {row['run_id']} cannot be rebuilt from its configuration (data or code changed?)")
    return runs[0], cfg, data


def data_config(cfg: SweepConfig) -> DataConfig:
    return DataConfig(cfg.data, cfg.heldout, tuple(cfg.data_recipe))


def load_data(cfg: SweepConfig) -> Dataset:
    ds = data_config(cfg).build()
    if cfg.subsample == 1:
        return ds
    X, y = ds.X[::cfg.subsample], ds.y[::cfg.subsample]
    meta = {**ds.recipe, "subsample": cfg.subsample}
    return Dataset(X, y, ds.X_heldout[::cfg.subsample], ds.y_heldout[::cfg.subsample], dataset_id(X, y, meta), meta,
                   ds.config)


def build_runs(cfg: SweepConfig, data: Dataset) -> list[Run]:
    """Every (target, lr, schedule, seed) combination, in that nesting order, each run once."""
    method = get_method(cfg.method)(cfg.method_config())
    params = method.params()
    # the init seed hashes the params as the run id does: without entries at their
    # OMITTED_AT_DEFAULT values, so a field added with a default renames no stored run
    seed_params = canonical_config({"params": params})["params"]
    fixed = cfg.fixed_init()
    runs, ids = [], set()
    for F in cfg.nnz:
        for lr in cfg.lrs:
            for schedule in cfg.schedules:
                for seed in range(cfg.seeds):
                    seed_of_run = run_init_seed("prune", cfg.method, seed_params, list(cfg.widths), F, lr, schedule, seed)
                    if fixed is None:   # the run's own random init
                        init = {"init_width": cfg.init_width, "init": RANDOM_INIT, "init_seed": seed_of_run}
                    else:               # the checkpoint's slice; the seed only drives the method's randomness
                        init = {"init_width": None, "init": f"checkpoint:{fixed.id}", "init_seed": None}
                    config = {"kind": "prune", "method": cfg.method, "widths": list(cfg.widths), **init,
                              "lr": lr, "schedule": schedule, "epochs": cfg.epochs,
                              "batch_size": cfg.batch_size, "momentum": cfg.momentum,
                              "weight_decay": cfg.weight_decay, "seed": seed, "target_nnz": F,
                              "params": params, "dataset_id": data.id,
                              "data": {"heldout": cfg.heldout, "subsample": cfg.subsample,
                                       **data_config(cfg).to_row()}}
                    run = Run(config, F, lr, schedule, seed, method_seed=seed_of_run)
                    if run.run_id not in ids:
                        ids.add(run.run_id)
                        runs.append(run)
    return runs


def default_chunk(device: torch.device) -> int:
    return 2048 if device.type == "cuda" else 256


def _group_key(cfg: SweepConfig, mcfg: MethodConfig, run: Run) -> int:
    """Runs with equal keys can share one batched model (same sequence of training calls)."""
    return mcfg.retrain_rounds(cfg.layer_weights(), run.target)


def plan_chunks(cfg: SweepConfig, runs: list[Run], device: torch.device) -> list[list[Run]]:
    size = cfg.chunk or default_chunk(device)
    if cfg.engine == "single":
        size = 1
    mcfg = cfg.method_config()
    groups: dict[int, list[Run]] = {}
    for r in runs:
        groups.setdefault(_group_key(cfg, mcfg, r), []).append(r)
    chunks = []
    for key in sorted(groups):
        g = groups[key]
        n = math.ceil(len(g) / size)
        per = math.ceil(len(g) / n)  # balanced chunks
        chunks += [g[i:i + per] for i in range(0, len(g), per)]
    return chunks


def sweep_chunks(cfg: SweepConfig, runs: list[Run], device: torch.device, jobs: int = 1) -> list[list[Run]]:
    """The chunks of a sweep of ``runs`` (all of its configuration's runs, :func:`build_runs`) with
    ``jobs`` workers: :func:`plan_chunks`, with chunks cut small enough that every worker has
    one when ``jobs > 1``. A function of the configuration, the device type and ``jobs`` only."""
    if jobs > 1 and runs:
        size = cfg.chunk or default_chunk(device)
        cfg = dataclasses.replace(cfg, chunk=max(1, min(size, math.ceil(len(runs) / jobs))))
    return plan_chunks(cfg, runs, device)


def epochs_per_run(cfg: SweepConfig, run: Run) -> int:
    return cfg.method_config().total_epochs(cfg.epochs, cfg.layer_weights(), run.target)


def initial_model(cfg: SweepConfig, runs: list[Run]):
    """The untrained model of ``runs``: a :class:`~pruners.layers.BatchedMLP` with one replica per
    run (the ``single`` engine: one plain MLP), each from its init: the width-W slice of the
    sweep's init checkpoint, or its own random init drawn from its ``init_seed``."""
    fixed = cfg.fixed_init()
    if fixed is None and any(r.init_seed is None for r in runs):
        raise ValueError("these runs start from an init checkpoint: give the sweep its init_checkpoint")
    if fixed is not None and any(r.init_id != fixed.id for r in runs):
        raise ValueError(f"these runs do not start from init checkpoint {fixed.id} ({cfg.init_checkpoint})")
    sliced = None if fixed is None else [(np.ascontiguousarray(w), np.ascontiguousarray(b))
                                         for w, b in fixed.sliced(cfg.widths)]
    if cfg.engine == "single":
        if len(runs) != 1:
            raise ValueError("the single engine runs one run at a time")
        from cubist.model import init_weights
        return plain_mlp(cfg.widths, sliced or init_weights(cfg.widths, cfg.init_width, runs[0].init_seed))
    if fixed is None:
        return BatchedMLP.from_seeds(cfg.widths, [r.init_seed for r in runs], cfg.init_width)
    model = BatchedMLP(cfg.widths, len(runs))
    for r in range(len(runs)):
        model.load_replica(r, sliced)
    return model


def run_chunk(cfg: SweepConfig, runs: list[Run], data: Dataset, device: torch.device, on_epoch=None) -> list[dict]:
    """Train and prune ``runs`` together; returns their result rows."""
    t0 = time.perf_counter()
    configs = [TrainConfig(lr=r.lr, schedule=r.schedule, epochs=cfg.epochs, batch_size=cfg.batch_size,
                           momentum=cfg.momentum, weight_decay=cfg.weight_decay, seed=r.seed) for r in runs]
    model = initial_model(cfg, runs)
    model.to(device)
    layers = prunable_layers(model)
    trainer = Trainer(model, layers, data.X, data.y, configs, device=device)
    if on_epoch is not None:
        trainer.epoch_callbacks.append(lambda: on_epoch(len(runs)))
    method = get_method(cfg.method)(cfg.method_config())
    ctx = PruneContext(model, trainer, layers, [r.target for r in runs], method.config, seeds=[r.rng_seed for r in runs],
                       method_name=cfg.method, input_shape=(cfg.widths[0],))
    run_method(method, ctx)
    acc, loss = trainer.evaluate(data.X, data.y)
    hacc, _ = trainer.evaluate(data.X_heldout, data.y_heldout)
    diverged = (trainer.diverged | ~torch.isfinite(loss)).cpu().numpy()
    acc, loss, hacc = acc.cpu().numpy(), loss.cpu().numpy(), hacc.cpu().numpy()
    masks = [l.mask.detach().cpu().numpy() != 0 for l in layers]
    wall = (time.perf_counter() - t0) / len(runs)
    all_params = model.all_params() if cfg.engine != "single" else None
    rows = []
    for i, run in enumerate(runs):
        m = [mk[i] for mk in masks]
        counts = mask_counts(m)
        if cfg.engine == "single":
            weights = [(l.weight()[0].detach().cpu().numpy().copy(),
                        (l.bias_param * l.module.bias_mask).detach().cpu().numpy().copy()) for l in layers]
        else:
            weights = [(w[i].copy(), b[i].copy()) for w, b in all_params]
        metrics = {"train_acc": float(acc[i]), "heldout_acc": float(hacc[i]), "final_loss": float(loss[i]),
                   "diverged": bool(diverged[i]), **{k: int(v) for k, v in counts.items()}}
        extra = {**ctx.extra[i], "epochs_trained": trainer.epoch_counter, "chunk_size": len(runs),
                 "layer_nnz": [int(mk.sum()) for mk in m]}
        rows.append(make_row(run.config, masks=m, weights=weights if cfg.keep_weights else None, metrics=metrics,
                             extra=extra, engine=ENGINE_NAMES[cfg.engine], wall_time_s=wall))
    return rows


def check_feasible(cfg: SweepConfig, data: Dataset) -> None:
    """Errors that depend on the data, raised before any training."""
    steps = len(data.X) // cfg.batch_size
    if steps < 1:
        raise ValueError(f"{len(data.X)} points are fewer than one batch of {cfg.batch_size}")
    cfg.method_config().check_run_length(steps * cfg.epochs)


def _worker(cfg: SweepConfig, chunk: list[Run], threads: int) -> list[dict]:
    """One chunk in a worker process (CPU; loky, dask or ray): its own data copy and thread count."""
    torch.set_num_threads(threads)
    return run_chunk(cfg, chunk, load_data(cfg), torch.device("cpu"))


def run_sweep(cfg: SweepConfig, *, store: ResultStore | str | None = None, progress: bool = False,
              threads: int | None = None, jobs: int = 1) -> list[dict]:
    """Run the sweep (skipping runs already in ``store``); returns the new rows.

    ``store``: a :class:`~cubist.store.ResultStore` (or its path) that rows are written to, by
    this process, as chunks finish (workers need no shared filesystem); ``None`` keeps them in
    memory only. ``threads``: torch CPU threads (per worker). ``jobs``: worker processes on CPU
    (chunks are split so every worker has one; the progress bar then advances per finished
    chunk); ignored on CUDA. Under a cluster backend (``joblib.parallel_config("dask")`` or
    ``"ray"``) the chunks run on the cluster's CPUs, cut exactly as for ``jobs`` loky workers (so
    the rows equal a loky run with the same ``jobs``), at most ``jobs`` at once.
    """
    if isinstance(store, str):
        store = ResultStore(store)
    if threads:
        torch.set_num_threads(threads)
    cluster = on_cluster()
    if cluster and cfg.device == "cuda":
        raise ValueError("a cluster backend trains on the workers' CPUs: use device 'cpu' or 'auto'")
    device = torch.device("cpu") if cluster else resolve_device(cfg.device)
    data = load_data(cfg)
    check_feasible(cfg, data)
    runs = build_runs(cfg, data)
    jobs = max(1, int(jobs)) if device.type == "cpu" and (cfg.engine == "batched" or cluster) else 1
    chunks = sweep_chunks(cfg, runs, device, jobs)  # from every run of the sweep, whatever is stored
    pool = min(jobs, len(chunks)) > 1  # workers train the chunks (decided by the whole plan, too)
    missing = {r.run_id for r in runs}
    if store is not None:
        missing -= store.done()
        chunks = [c for c in chunks if any(r.run_id in missing for r in c)]
    jobs = max(1, min(jobs, len(chunks)))
    runs = [r for c in chunks for r in c]  # what is trained: every chunk with a missing run, whole
    remote = cluster and bool(runs)
    bar = None
    if progress and runs:
        from tqdm import tqdm
        bar = tqdm(total=len(runs), unit="run", dynamic_ncols=True, smoothing=0.1,
                   desc=f"prune {cfg.method} ({cfg.engine}, {device.type})",
                   bar_format="{l_bar}{bar}| {n:.0f}/{total} runs [{elapsed}<{remaining}, {rate_fmt}]")
    all_rows = []
    writer = StoreWriter(store, flush_every=1) if store is not None else None
    claims = ChunkClaims(store, missing)  # each chunk claimed before training, released once stored

    def take(chunk, wait: bool) -> str:
        """Claim a chunk: "train", "busy" (another sweep holds it) or "done" (stored meanwhile)."""
        state = claims.take([r.run_id for r in chunk], wait=wait)
        if state == "done" and bar is not None:
            bar.update(len(chunk))
        return state

    def store_rows(rows, ids) -> None:
        nonlocal all_rows
        kept = [r for r in rows if r["run_id"] in missing]  # stored runs retrained, not written again
        all_rows += kept
        if writer is not None:
            writer.add(kept)
            writer.flush()
        claims.release(ids)

    try:
        todo = chunks
        for wait in (False, True):  # first what no other sweep holds, then wait for the rest
            deferred = []
            if (pool or remote) and runs:
                def tasks(todo=todo, wait=wait, deferred=deferred):
                    for chunk in todo:
                        state = take(chunk, wait)
                        if state == "train":
                            yield cfg, chunk, threads or 1
                        elif state == "busy":
                            deferred.append(chunk)
                for rows in map_unordered(_worker, tasks(), jobs):
                    if bar is not None:
                        bar.update(len(rows))
                    store_rows(rows, [r["run_id"] for r in rows])
            else:
                for chunk in todo:
                    state = take(chunk, wait)
                    if state == "busy":
                        deferred.append(chunk)
                    if state != "train":
                        continue
                    epochs_total = epochs_per_run(cfg, chunk[0])
                    base = bar.n if bar is not None else 0
                    credited = [0.0]

                    def tick(n_runs, epochs_total=epochs_total, credited=credited, base=base, size=len(chunk)):
                        if bar is not None:  # fractional runs as epochs pass, never past the chunk
                            credited[0] += n_runs / epochs_total
                            bar.n = base + min(credited[0], size)
                            bar.refresh()

                    rows = run_chunk(cfg, chunk, data, device, on_epoch=tick)
                    if bar is not None:  # diverged plain runs stop early: settle the count exactly
                        bar.n = base + len(chunk)
                        bar.refresh()
                    store_rows(rows, [r.run_id for r in chunk])
            todo = deferred
            if not todo:
                break
    finally:
        if writer is not None:
            writer.flush()
        claims.release_all()
        if bar is not None:
            bar.close()
    return all_rows


def sweep_config_from_row(row, **overrides) -> SweepConfig:
    """The one-run :class:`SweepConfig` that produced a stored row (dict or DataFrame row).

    ``overrides`` (e.g. ``engine="single"``, ``device="cuda"``) change how, not what, is run;
    a row that starts from an init checkpoint needs ``init_checkpoint=`` that file (its id must
    be the row's).
    """
    import json
    config = json.loads(row["config"])
    init = config.get("init") or RANDOM_INIT
    given = overrides.get("init_checkpoint")
    if init == RANDOM_INIT and given is not None:
        raise ValueError(f"row {row['run_id']} starts from its own random init; give no init_checkpoint")
    if init != RANDOM_INIT and given is None:
        raise ValueError(f"row {row['run_id']} starts from init {init}: give init_checkpoint= that file")
    params = dict(config["params"])
    method = params.pop("method")
    params.pop("procedure", None)
    data = config.get("data", {})
    cfg = dict(method=method, widths=tuple(config["widths"]), nnz=(config["target_nnz"],), lrs=(config["lr"],),
               schedules=(config["schedule"],), seeds=config["seed"] + 1, epochs=config["epochs"],
               batch_size=config["batch_size"], momentum=config["momentum"], weight_decay=config["weight_decay"],
               init_width=config["init_width"] if config.get("init_width") is not None else 16,
               method_params=params, heldout=data.get("heldout", "between"),
               subsample=data.get("subsample", 1))
    dc = DataConfig.from_row(data)
    cfg.update(data=dc.name, data_recipe=dc.recipe)
    cfg.update(overrides)
    out = SweepConfig(**cfg)
    if init != RANDOM_INIT and f"checkpoint:{out.fixed_init().id}" != init:
        raise ValueError(f"row {row['run_id']} starts from init {init}, {given} is checkpoint:{out.fixed_init().id}")
    return out


def rerun(row, **overrides) -> dict:
    """Run again the run that produced ``row``; returns the new row (same ``run_id``)."""
    run, cfg, data = _rebuild(row, overrides)  # the data built once
    return run_chunk(cfg, [run], data, resolve_device(cfg.device))[0]
