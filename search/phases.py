"""The paper's combinatorial search, phase 1 (dense widths) and phase 2 (masks).

Zhang & Papyan, "Sparsest Models Elude Pruning" (ICML 2024), §3 of ALGORITHMS.md:

- phase 1 trains every dense sub-architecture ``(d1, ..., dk)`` with hidden widths in
  ``1..max_width`` on the hyper-parameter grid; the smallest architectures reaching the target
  accuracy are the candidates;
- phase 2 enumerates the masks of the chosen widths (one per symmetry orbit, or every labelled
  mask for a fixed initialisation), trains each on the grid and reports the fewest weight
  nonzeros reaching the target. Sparsest-first by default: whole nnz levels are trained in
  increasing order and the search stops after the first level in which some mask reaches the
  target; ``exhaustive`` trains every level, ``max_nnz`` every level up to a bound.

Every training is one result row (``kind`` ``search_widths`` or ``search_masks``) whose
configuration holds the mask, so a rerun trains only what is missing. Work is cut into
chunks of models trained together by the numba engine (:func:`search.engine.train_masks`);
chunks run in-process, or spread over ``jobs`` joblib workers (any joblib backend, a Dask
cluster included, via ``joblib.parallel_config``).
"""
from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from cubist.masks import mask_counts, pack_masks
from cubist.spiral import Dataset
from cubist.store import ResultStore, make_row, run_id
from cubist.train import SCHEDULES, TrainConfig


@dataclass(frozen=True)
class Grid:
    """The hyper-parameter grid every architecture or mask is trained on."""

    lrs: tuple[float, ...] = field(default=(0.05, 0.1), metadata={"help": "learning rates"})
    schedules: tuple[str, ...] = field(default=SCHEDULES, metadata={"help": "learning-rate schedules"})
    seeds: int = field(default=1, metadata={"help": "seeds 0..K-1"})
    epochs: int = field(default=50, metadata={"help": "epochs per run"})
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self):
        for lr, sch in itertools.product(self.lrs, self.schedules):  # validated by TrainConfig
            TrainConfig(lr=lr, schedule=sch, epochs=self.epochs, batch_size=self.batch_size,
                        momentum=self.momentum, weight_decay=self.weight_decay)
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")

    def points(self):
        """(lr, schedule, seed) for every run of one architecture or mask."""
        return list(itertools.product(self.lrs, self.schedules, range(self.seeds)))


@dataclass
class FixedInit:
    """A saved initialisation (e.g. of the width-16 network) shared by every run."""

    params: list  # [(W, b), ...] float32 numpy, at least as wide as the searched widths
    id: str

    @classmethod
    def load(cls, path: str) -> "FixedInit":
        import torch
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is a user error
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"cannot read init checkpoint {path}: {first}") from None
        try:
            params = [(np.asarray(w, dtype=np.float32), np.asarray(b, dtype=np.float32)) for w, b in obj["params"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path} is not an init checkpoint (expected {{'params': [(W, b), ...]}})") from None
        h = hashlib.sha256()
        for w, b in params:
            h.update(w.tobytes())
            h.update(b.tobytes())
        return cls(params, h.hexdigest()[:16])

    def sliced(self, widths) -> list:
        if len(self.params) != len(widths) - 1:
            raise ValueError(f"init checkpoint has {len(self.params)} layers, widths {tuple(widths)} "
                             f"need {len(widths) - 1}")
        out = []
        for l, (w, b) in enumerate(self.params):
            if w.shape[0] < widths[l + 1] or w.shape[1] < widths[l]:
                raise ValueError(f"init checkpoint layer {l} {w.shape} is narrower than widths {tuple(widths)}")
            out.append((w[: widths[l + 1], : widths[l]], b[: widths[l + 1]]))
        return out


def save_init(path: str, widths=(2, 16, 16, 16, 1), seed: int = 0, init_width: int | None = 16) -> None:
    """Save the default init of ``widths`` drawn from ``seed`` for ``--init-checkpoint``."""
    import torch

    from cubist.model import init_params
    params = init_params(widths, init_width, seed)
    torch.save({"widths": list(widths), "seed": seed, "params": params}, path)


# -- one chunk of models ---------------------------------------------------------------------
@dataclass
class Chunk:
    """Models of one architecture trained together: masks stacked on a leading axis."""

    widths: tuple[int, ...]
    masks: list            # per layer: (R, out, in) bool
    lrs: np.ndarray        # (R,)
    schedules: list        # R names
    seeds: np.ndarray      # (R,)
    configs: list          # R row configurations


def train_chunk(chunk: Chunk, data: Dataset, grid: Grid, init: FixedInit | None, threads: int | None,
                engine_name: str = "numba") -> list[dict]:
    """Train one chunk with the numba engine and return its result rows."""
    from .engine import train_masks

    t0 = time.perf_counter()
    res = train_masks(data.X, data.y, chunk.widths, chunk.masks, lrs=chunk.lrs, schedules=chunk.schedules,
                      seeds=chunk.seeds, epochs=grid.epochs, batch_size=grid.batch_size, momentum=grid.momentum,
                      weight_decay=grid.weight_decay, init=None if init is None else init.sliced(chunk.widths),
                      X_heldout=data.X_heldout, y_heldout=data.y_heldout, threads=threads)
    per_run = (time.perf_counter() - t0) / len(chunk.configs)
    rows = []
    for r, config in enumerate(chunk.configs):
        masks = [m[r] for m in chunk.masks]
        weights = [(w[r], b[r]) for w, b in res.weights]
        metrics = dict(train_acc=float(res.train_acc[r]), final_loss=float(res.final_loss[r]),
                       diverged=bool(res.diverged[r]), **mask_counts(masks))
        if res.heldout_acc is not None:
            metrics["heldout_acc"] = float(res.heldout_acc[r])
        rows.append(make_row(config, masks=masks, weights=weights, metrics=metrics,
                             extra={"epochs_run": int(res.epochs_run[r])}, engine=engine_name,
                             wall_time_s=per_run))
    return rows


def run_chunks(chunks, store: ResultStore, data: Dataset, grid: Grid, *, init=None, jobs: int = 1,
               progress=None) -> list[dict]:
    """Train chunks (in-process for ``jobs=1``, else over joblib workers) and store each as it ends."""
    rows_out = []

    def finish(rows):
        store.write(rows)
        rows_out.extend(rows)
        if progress is not None:
            progress.update(len(rows))

    if jobs <= 1:
        for chunk in chunks:
            finish(train_chunk(chunk, data, grid, init, threads=None))
    else:
        from joblib import Parallel, delayed
        par = Parallel(n_jobs=jobs, return_as="generator_unordered")
        for rows in par(delayed(train_chunk)(c, data, grid, init, 1) for c in chunks):
            finish(rows)
    return rows_out


def _progress(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="run", disable=quiet, smoothing=0.05, dynamic_ncols=True)


def _row_config(kind, method, widths, lr, schedule, seed, grid, data, init, params):
    return dict(kind=kind, method=method, widths=list(widths), init_width=16 if init is None else None,
                lr=float(lr), schedule=schedule, epochs=grid.epochs, batch_size=grid.batch_size,
                momentum=grid.momentum, weight_decay=grid.weight_decay, seed=int(seed), target_nnz=None,
                params={**params, "init": "seed" if init is None else init.id}, dataset_id=data.id)


def _chunked(models, widths, chunk_size):
    """Group (mask, lr, schedule, seed, config) tuples into chunks, seeds kept together."""
    models = sorted(models, key=lambda m: m[3])  # models sharing a seed share the data order
    for s in range(0, len(models), chunk_size):
        part = models[s:s + chunk_size]
        yield Chunk(widths, [np.stack([m[0][l] for m in part]) for l in range(len(widths) - 1)],
                    np.array([m[1] for m in part], dtype=np.float64), [m[2] for m in part],
                    np.array([m[3] for m in part], dtype=np.int64), [m[4] for m in part])


# -- phase 2 ------------------------------------------------------------------------------
@dataclass
class MaskSearchResult:
    widths: tuple[int, ...]
    target: float
    sparsest_nnz: int | None          # fewest weight nnz reaching the target (None: not reached)
    masks_at_sparsest: int            # masks at that level reaching it (best over the grid)
    levels: dict                      # nnz -> (masks trained, masks reaching the target)
    rows: list                        # every row of the levels searched (stored and new)
    trained: int                      # runs trained by this call
    wall_time_s: float


def mask_key(masks) -> str:
    bits, shapes = pack_masks(masks)
    return bits.hex()


def search_masks(hidden, target: float = 0.95, grid: Grid = Grid(), *, store: ResultStore,
                 data: Dataset | None = None, symmetry: str = "orbits", init: FixedInit | None = None,
                 exhaustive: bool = False, max_nnz: int | None = None, chunk_size: int = 512,
                 jobs: int = 1, quiet: bool = False, log=print) -> MaskSearchResult:
    """Phase 2 for hidden widths ``hidden`` (e.g. ``(3, 3, 3)``); see the module docstring."""
    from .enumerate import count_masks, enumerate_masks

    t0 = time.perf_counter()
    data = data or Dataset.spiral()
    widths = (data.X.shape[1], *hidden, 1)
    if init is not None and symmetry != "labelled":
        raise ValueError("a fixed init makes permuted masks different: use symmetry='labelled'")
    if init is not None:
        init.sliced(widths)  # fails early when the checkpoint does not fit the widths
    counts = count_masks(widths, symmetry=symmetry)
    levels = sorted(counts)
    if max_nnz is not None:
        levels = [n for n in levels if n <= max_nnz]
    existing = _stored_accuracy(store)
    points = grid.points()
    result_levels, all_rows, trained = {}, [], 0
    sparsest, at_sparsest = None, 0
    for nnz in levels:
        models, level_rows = [], []
        for masks in enumerate_masks(widths, symmetry=symmetry, nnz=nnz):
            key = mask_key(masks)
            for lr, sch, seed in points:
                cfg = _row_config("search_masks", "mask", widths, lr, sch, seed, grid, data, init,
                                  {"mask": key, "symmetry": symmetry})
                rid = run_id(cfg)
                if rid in existing:
                    level_rows.append(existing[rid])
                else:
                    models.append((masks, lr, sch, seed, cfg))
        bar = _progress(len(models), f"nnz {nnz}", quiet)
        with bar:
            new = run_chunks(list(_chunked(models, widths, chunk_size)), store, data, grid, init=init,
                             jobs=jobs, progress=bar)
        trained += len(new)
        level_rows += [_acc_record(r) for r in new]
        all_rows += level_rows
        reached = masks_reaching(level_rows, target)
        result_levels[nnz] = (counts[nnz], len(reached))
        log(f"nnz {nnz}: {counts[nnz]} masks x {len(points)} runs, {len(reached)} masks reach {target:.4g}")
        if reached and sparsest is None:
            sparsest, at_sparsest = nnz, len(reached)
            if not exhaustive and max_nnz is None:
                break
    return MaskSearchResult(widths, target, sparsest, at_sparsest, result_levels, all_rows, trained,
                            time.perf_counter() - t0)


def _acc_record(row) -> dict:
    import json
    return {"run_id": row["run_id"], "train_acc": row["train_acc"], "diverged": row["diverged"],
            "mask": json.loads(row["params"])["mask"], "lr": row["lr"], "schedule": row["schedule"],
            "seed": row["seed"], "weight_nnz": row["weight_nnz"], "heldout_acc": row["heldout_acc"]}


def _stored_accuracy(store: ResultStore) -> dict:
    df = store.load(["kind", "params", "train_acc", "diverged", "lr", "schedule", "seed", "weight_nnz",
                     "heldout_acc"])
    df = df[df["kind"] == "search_masks"]
    return {r["run_id"]: _acc_record(r) for r in df.to_dict("records")}


def masks_reaching(records, target) -> dict:
    """mask key -> best record, over the masks whose best non-diverged run reaches ``target``."""
    best = {}
    for r in records:
        if r["diverged"] or not r["train_acc"] >= target:
            continue
        if r["mask"] not in best or r["train_acc"] > best[r["mask"]]["train_acc"]:
            best[r["mask"]] = r
    return best


# -- phase 1 ------------------------------------------------------------------------------
@dataclass
class WidthSearchResult:
    target: float
    reaching: list          # hidden width tuples reaching the target (best over the grid)
    by_weights: list        # the reaching architectures with the fewest weights
    by_units: list          # the reaching architectures with the fewest hidden units
    pareto: list            # reaching architectures not dominated width by width
    rows: list
    trained: int
    wall_time_s: float


def weight_count(widths) -> int:
    return sum(a * b for a, b in zip(widths, widths[1:]))


def search_widths(target: float = 0.95, grid: Grid = Grid(), *, store: ResultStore, data: Dataset | None = None,
                  max_width: int = 16, min_width: int = 1, depth: int = 3, init: FixedInit | None = None,
                  jobs: int = 1, quiet: bool = False, log=print) -> WidthSearchResult:
    """Phase 1: every dense architecture with ``depth`` hidden layers of ``min_width..max_width`` units."""
    t0 = time.perf_counter()
    data = data or Dataset.spiral()
    if not 1 <= min_width <= max_width:
        raise ValueError(f"need 1 <= min_width <= max_width, got {min_width}, {max_width}")
    existing = {}
    df = store.load(["kind", "widths", "train_acc", "diverged"])
    for r in df[df["kind"] == "search_widths"].to_dict("records"):
        existing[r["run_id"]] = r
    chunks, rows = [], []
    for hidden in itertools.product(range(min_width, max_width + 1), repeat=depth):
        widths = (data.X.shape[1], *hidden, 1)
        dense = [np.ones((widths[l + 1], widths[l]), bool) for l in range(len(widths) - 1)]
        models = []
        for lr, sch, seed in grid.points():
            cfg = _row_config("search_widths", "dense", widths, lr, sch, seed, grid, data, init, {})
            rid = run_id(cfg)
            if rid in existing:
                rows.append(existing[rid])
            else:
                models.append((dense, lr, sch, seed, cfg))
        chunks += list(_chunked(models, widths, 512))
    total = sum(len(c.configs) for c in chunks)
    with _progress(total, "widths", quiet) as bar:
        new = run_chunks(chunks, store, data, grid, init=init, jobs=jobs, progress=bar)
    rows += new
    reach = sorted({tuple(r["widths"][1:-1]) for r in rows if not r["diverged"] and r["train_acc"] >= target})
    full = lambda h: (data.X.shape[1], *h, 1)  # noqa: E731
    by_w = _argmins(reach, lambda h: weight_count(full(h)))
    by_u = _argmins(reach, sum)
    pareto = [h for h in reach if not any(o != h and all(a <= b for a, b in zip(o, h)) for o in reach)]
    if reach:
        log(f"{len(reach)} architectures reach {target:.4g}; fewest weights: {by_w} "
            f"({weight_count(full(by_w[0]))}); fewest units: {by_u} ({sum(by_u[0])})")
    else:
        log(f"no architecture reached {target:.4g}")
    return WidthSearchResult(target, reach, by_w, by_u, pareto, rows, len(new), time.perf_counter() - t0)


# -- a mask alone, trained from the initialisation ---------------------------------------------
def retrain_from_init(widths, masks, grid: Grid = Grid(), *, data: Dataset | None = None,
                      init_width: int | None = 16, threads: int | None = None):
    """Train one mask from the initialisation on every grid point, as the search trains masks.

    The question it answers about a pruned network: is its *mask* enough to reach the target, or
    does it need the weights pruning left it with (rewound, or trained on through cycles)? The
    mask is trained by the engine from ``init_params(widths, init_width, seed)`` for each
    (lr, schedule, seed) of ``grid``. Returns a DataFrame, one row per grid point: ``lr``,
    ``schedule``, ``seed``, ``train_acc``, ``heldout_acc``, ``final_loss``, ``diverged``.
    """
    import pandas as pd

    from .engine import train_masks
    data = data or Dataset.spiral()
    points = grid.points()
    res = train_masks(data.X, data.y, widths, [np.asarray(m) != 0 for m in masks],
                      lrs=[p[0] for p in points], schedules=[p[1] for p in points], seeds=[p[2] for p in points],
                      epochs=grid.epochs, batch_size=grid.batch_size, momentum=grid.momentum,
                      weight_decay=grid.weight_decay, init_width=init_width, X_heldout=data.X_heldout,
                      y_heldout=data.y_heldout, threads=threads)
    return pd.DataFrame({
        "lr": [p[0] for p in points], "schedule": [p[1] for p in points], "seed": [p[2] for p in points],
        "train_acc": res.train_acc.astype(float),
        "heldout_acc": res.heldout_acc.astype(float) if res.heldout_acc is not None else np.nan,
        "final_loss": res.final_loss.astype(float), "diverged": res.diverged.astype(bool)})


def _argmins(items, key):
    if not items:
        return []
    best = min(key(i) for i in items)
    return [i for i in items if key(i) == best]


def grid_from(lrs, schedules, seeds, epochs) -> Grid:
    return Grid(lrs=tuple(lrs), schedules=tuple(schedules), seeds=seeds, epochs=epochs)


__all__ = ["Grid", "FixedInit", "save_init", "search_masks", "search_widths", "MaskSearchResult",
           "WidthSearchResult", "mask_key", "masks_reaching", "weight_count", "grid_from", "retrain_from_init"]
