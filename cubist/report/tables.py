"""Analysis of result stores: the tables of the audit, as pure functions of a DataFrame.

The audit compares pruning methods with the exact sparsest MLPs of the Cubist Spiral found by
the combinatorial search of Zhang & Papyan, "Sparsest Models Elude Pruning" (ICML 2024; see
``ALGORITHMS.md`` §1-§3 and §5). Every function below takes the rows of one or more result
stores (:func:`load_results`, or ``pandas.read_parquet``/duckdb on the same shards) and returns a
new DataFrame; nothing is mutated, so a notebook can rebuild every table. A frame is normalised
once (:func:`normalised`; :func:`load_results` does it) and not again by the tables; what several
tables of one target share is computed once in a :class:`TargetInputs` (``inputs=``).

Conventions, the same in every table:

- a run *reaches* the target when it did not diverge and ``train_acc >= target`` (the paper
  evaluates on the training set; :func:`cubist.stats.reached_target`); diverged runs never count;
- one run of these tiny nets is a draw from its random init, so a claim about a mask, an
  architecture or a pruning budget is a *success rate* over runs: ``successes`` of ``runs``,
  with the Wilson interval ``low``/``high`` (:func:`cubist.stats.wilson_interval`, 95% unless
  told). A *grid point* is one hyper-parameter setting (``lr``, ``schedule``; for pruners also
  the method's ``params``) whose runs differ only in their init (seed index ``seed``); ``inits``
  is K, the fewest runs at one grid point. ``rate`` pools every run of a group; ``best_*``
  describe its best grid point (most successes, then highest rate, then best accuracy, then the
  smallest ``lr`` and the last ``schedule`` by name, as ``search.phases.mask_rates`` breaks
  ties) -- a maximum over grid points, so optimistic;
- "nnz" is the number of nonzero *weights* (``weight_nnz``; biases are recorded separately, as
  in the paper's tables); ``effective_nnz`` counts the weights on an input-to-output path (§5);
- search rows are ``kind == "search_masks"`` (phase 2, method ``"mask"``); pruner rows are
  ``kind == "prune"`` with ``method`` the pruner and ``target_nnz`` the budget F. The *level*
  of a pruner run is its budget, or its achieved ``weight_nnz`` when it had no budget;
- rows of ``kind == "search_retrain"`` (``cubist search retrain --out``: a pruned run's mask trained
  from init exactly as the search trains masks) count in no search table: only the audit's
  mask-or-weights column (:func:`method_audit`) reads them, beside the search's rows;
- the search bound that applies to a pruned architecture ``W`` is the fewest nnz the search
  found at any searched architecture ``V`` that embeds in ``W`` (same depth, ``V_i <= W_i``):
  every mask of ``V`` is also a mask of ``W``, so pruning ``W`` can in principle find it;
- ties are broken deterministically: higher ``train_acc``, then the smaller ``run_id``.
"""
from __future__ import annotations

import itertools
import math
import json
import os
from functools import cached_property, lru_cache

import numpy as np
import pandas as pd

from cubist.masks import dense_weight_count, effective_masks, mask_counts, pack_masks, widths_key, widths_label
from cubist.stats import reached_target, wilson_interval
from cubist.store import COLUMNS, ResultStore, row_masks, row_weights

from .symmetry import EXACT_MAX_WIDTH, compact_masks, mask_widths, max_shared_weights, same_orbit

SEARCH_KIND = "search_masks"
DENSE_KIND = "search_widths"
PRUNE_KIND = "prune"
RETRAIN_KIND = "search_retrain"  # search.phases.RETRAIN_KIND: masks of other runs, trained from init
SEARCH_LABEL = "search"          # the search's row in the headline table
NEVER = "never reached"          # marker of a method whose runs never reached the target
NO_RUNS = "no runs"              # marker of an expected method without any rows
SEARCH_GRID = ("lr", "schedule")             # a grid point of the search (its runs differ by init only)
PRUNE_GRID = ("lr", "schedule", "params")    # a grid point of a pruner sweep


class ResultsError(ValueError):
    """Bad analysis input (missing or empty store, unknown run id; a run asked for that never reached the
    target). The audit never raises it for a target no run reached: it reports it."""


# -- loading ---------------------------------------------------------------------------------
def load_results(paths, progress: bool = False) -> pd.DataFrame:
    """All rows of one or more result store directories, one per ``run_id`` (first kept).

    ``widths`` become tuples (hashable, for grouping). Raises :class:`ResultsError` for a path
    that is missing, not a directory, or holds no result shards. ``progress``: a bar per store
    on stderr as its shards are read and checked (the first read of a shard checks it whole).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ResultsError("no result directory given")
    for path in paths:   # every path checked before any is read
        if not os.path.exists(path):
            raise ResultsError(f"result directory {path} does not exist")
        if not os.path.isdir(path):
            raise ResultsError(f"{path} is not a result directory")
    frames = []
    for path in paths:
        store = ResultStore(path)
        frames.append(_read_store(store, progress))
        if not store.shards():   # checked by the read: no work again
            raise ResultsError(f"result directory {path} holds no results (no part-*.parquet shards)")
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    df = df.drop_duplicates("run_id", keep="first").reset_index(drop=True)
    if progress and len(df) >= ROWS_NOTICE:
        import sys
        print(f"preparing the rows of {len(df):,} runs...", file=sys.stderr, flush=True)
    return _normalise(df)


PROGRESS_DELAY_S = 0.5   # a store read faster shows no bar (nor does one that is found empty or bad at once)
ROWS_NOTICE = 50_000     # from this many rows on, preparing them (and the report) takes noticeable time: say so


def _read_store(store: ResultStore, progress: bool) -> pd.DataFrame:
    """``store.load()``, with a bar of its shards on stderr when ``progress`` (once it takes
    :data:`PROGRESS_DELAY_S`)."""
    if not progress:
        return store.load()
    import sys

    from tqdm.auto import tqdm
    with tqdm(desc=f"reading {store.path}", unit="shard", file=sys.stderr, dynamic_ncols=True,
              delay=PROGRESS_DELAY_S) as bar:
        def advance(done, total):
            bar.total = total
            bar.update(done - bar.n)
        return store.load(progress=advance)


_NORMALISED = "cubist.report.normalised"   # the df.attrs marker of a normalised frame
_FLOATS = ("train_acc", "weight_nnz", "effective_nnz", "dead_units", "target_nnz")   # float64 once normalised


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with tuple widths and the flags analysis relies on filled in (marked normalised)."""
    df = df.copy()
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    df["widths"] = [widths_key(w) for w in df["widths"]]
    df["diverged"] = df["diverged"].astype("boolean").fillna(False).astype(bool)
    for c in _FLOATS:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["method_base"] = df["method"]
    df["method"] = [method_label(m, p) for m, p in zip(df["method"], df["params"])]
    df.attrs[_NORMALISED] = True
    return df


def is_normalised(df: pd.DataFrame) -> bool:
    """Whether ``df`` is normalised already: marked by :func:`load_results` or :func:`normalised`
    (a selection of its rows keeps the mark), with every stored column and ``method_base``, and
    columns still of their normalised types (a column assigned since is normalised again)."""
    if not df.attrs.get(_NORMALISED) or "method_base" not in df.columns or any(c not in df.columns for c in COLUMNS):
        return False
    if df["diverged"].dtype != bool or any(df[c].dtype != np.float64 for c in _FLOATS):
        return False
    return df.empty or isinstance(df["widths"].iloc[0], tuple)


def normalised(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` itself when it is normalised (:func:`is_normalised`), else a normalised copy: tuple
    ``widths``, boolean ``diverged``, float counts, every stored column, ``method`` as
    :func:`method_label` and the stored one in ``method_base``."""
    return df if is_normalised(df) else _normalise(df)


def method_label(method, params) -> str:
    """The name a method is reported under: variants that are different methods get their own.

    ``random`` becomes ``random-<density scheme>`` (``random-global`` for one global top-k), and
    ``imp`` with weight rewinding (``rewind=step``) becomes ``imp-wr``; the stored ``method``
    stays in ``method_base``.
    """
    if not isinstance(method, str) or not isinstance(params, str) or method not in ("random", "imp"):
        return method
    try:
        p = json.loads(params)
    except ValueError:
        return method
    if method == "random" and "scope" in p:
        return "random-global" if p["scope"] == "global" else f"random-{p.get('density_scheme')}"
    return "imp-wr" if method == "imp" and p.get("rewind") == "step" else method


def has_widths(df: pd.DataFrame, widths) -> pd.Series:
    """Boolean Series: the row's architecture is ``widths``."""
    w = widths_key(widths)
    return pd.Series([widths_key(v) == w for v in df["widths"]], index=df.index, dtype=bool)


def reached(df: pd.DataFrame, target: float) -> pd.Series:
    """Boolean Series: the run reached ``target`` (:func:`cubist.stats.reached_target`)."""
    acc = pd.to_numeric(df["train_acc"], errors="coerce")
    div = df["diverged"].astype("boolean").fillna(False).astype(bool)
    return pd.Series(np.asarray(reached_target(acc.to_numpy(), div.to_numpy(), target), dtype=bool),
                     index=df.index, dtype=bool)


def _mask_key(df: pd.DataFrame) -> pd.Series:
    """Identity of a run's mask (its packed bits and shapes); the run id when it has none."""
    return pd.Series([(bytes(b), str([list(s) for s in sh])) if b is not None else ("run", r)
                      for b, sh, r in zip(df["mask_bits"], df["mask_shapes"], df["run_id"])],
                     index=df.index, dtype=object)


def _of_kind(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The normalised rows of ``kind`` (selected first: normalising every row is the slow part;
    rows of a normalised frame are not normalised again)."""
    return normalised(df[df["kind"] == kind] if "kind" in df.columns else df.iloc[:0])


def _kind_rows(df: pd.DataFrame, kind: str, target: float) -> pd.DataFrame:
    """The normalised rows of search ``kind`` with ``_ok`` (reached ``target``) and ``mask`` (the
    key of :func:`_mask_label`; ``"dense"`` for phase 1, where an architecture is its one mask)."""
    rows = _of_kind(df, kind)
    return rows.assign(_ok=reached(rows, target), mask="dense" if kind == DENSE_KIND else _mask_label(rows))


_ANY = object()   # a table whose values do not depend on min_rate takes inputs of any min_rate


def dataset_label(rows: pd.DataFrame) -> str:
    """``name (dataset_id)`` of the data set of ``rows`` (the name from the rows' configuration)."""
    from cubist.data import DataConfig
    did = rows["dataset_id"].dropna().iloc[0] if rows["dataset_id"].notna().any() else "unknown"
    first = rows.iloc[0]
    name = DataConfig.of_row(first).name if isinstance(first.get("config"), str) else "spiral"
    return f"{name} ({did})"


def by_dataset(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The rows of each data set (``dataset_id``), keyed by :func:`dataset_label`, in id order;
    rows without an id form one group. The tables never pool two data sets."""
    ids = df["dataset_id"].fillna("") if "dataset_id" in df.columns else pd.Series("", index=df.index)
    groups = {}
    for did in sorted(ids.unique()):
        part = df[ids == did]
        part.attrs = dict(df.attrs)
        groups[dataset_label(part)] = part
    return groups


def check_one_dataset(df: pd.DataFrame) -> None:
    """Raise :class:`ResultsError` when ``df`` holds rows of more than one data set."""
    if "dataset_id" in df.columns and df["dataset_id"].dropna().nunique() > 1:
        ids = ", ".join(sorted(df["dataset_id"].dropna().unique()))
        raise ResultsError(f"rows of {df['dataset_id'].dropna().nunique()} data sets ({ids}): tables never pool "
                           f"data sets; split them with by_dataset")


class TargetInputs:
    """What the tables of one target share, each computed once, when first needed.

    For the frame ``df`` (normalised by the tables where it is not), ``target``, ``min_rate``
    and ``confidence``: ``search_rows`` (the search's rows, :func:`_kind_rows`), ``per_mask``
    (:func:`mask_success`), ``levels`` (:func:`level_success`), ``search``
    (:func:`sparsest_search`), ``prune_rows`` (the pruner rows with ``level`` and ``_ok``),
    ``rates`` (:func:`success_rates`) and ``frontier`` (:func:`method_frontier`). The tables of
    a target take one as ``inputs=`` (:func:`cubist.report.audit.audit_tables` passes one per
    target) and build their own without it; they never mutate it and return copies.
    """

    def __init__(self, df: pd.DataFrame, target: float, min_rate: float | None = None, confidence: float = 0.95):
        check_one_dataset(df)
        self.df, self.target, self.min_rate, self.confidence = df, target, min_rate, confidence

    @cached_property
    def search_rows(self) -> pd.DataFrame:
        return _kind_rows(self.df, SEARCH_KIND, self.target)

    @cached_property
    def retrain_rows(self) -> pd.DataFrame:
        return _kind_rows(self.df, RETRAIN_KIND, self.target)

    @cached_property
    def per_mask(self) -> pd.DataFrame:
        return _mask_success(self.search_rows, self.confidence)

    @cached_property
    def levels(self) -> pd.DataFrame:
        return _levels(self.per_mask)

    @cached_property
    def search(self) -> pd.DataFrame:
        return _sparsest_search(self)

    @cached_property
    def prune_rows(self) -> pd.DataFrame:
        rows = _of_kind(self.df, PRUNE_KIND)
        rows = rows.assign(level=rows["target_nnz"].where(rows["target_nnz"].notna(), rows["weight_nnz"]))
        return rows.assign(_ok=reached(rows, self.target))

    @cached_property
    def rates(self) -> pd.DataFrame:
        return _success_rates(self)

    @cached_property
    def frontier(self) -> pd.DataFrame:
        return _method_frontier(self)


def _inputs(inputs: TargetInputs | None, df: pd.DataFrame, target: float, confidence: float = 0.95,
            min_rate=_ANY) -> TargetInputs:
    """``inputs`` when given (checked to be of ``df`` and these parameters), else new ones."""
    if inputs is None:
        return TargetInputs(df, target, None if min_rate is _ANY else min_rate, confidence)
    if (inputs.df is not df or inputs.target != target or inputs.confidence != confidence
            or (min_rate is not _ANY and inputs.min_rate != min_rate)):
        raise ValueError(f"inputs of target {inputs.target}, min_rate {inputs.min_rate}, confidence "
                         f"{inputs.confidence} (or of another frame) given for target {target}"
                         + (f", min_rate {min_rate}" if min_rate is not _ANY else "") + f", confidence {confidence}")
    return inputs


def _best_run(rows: pd.DataFrame) -> pd.Series:
    """The representative of tied rows: highest train_acc, then the smallest run_id."""
    return rows.sort_values(["train_acc", "run_id"], ascending=[False, True], na_position="last").iloc[0]


# -- success over inits ----------------------------------------------------------------------
RATE_COLUMNS = ["runs", "inits", "successes", "rate", "low", "high"]
BEST_COLUMNS = ["best_runs", "best_successes", "best_rate", "best_low", "best_high"]


def _with_interval(table: pd.DataFrame, successes: str, runs: str, prefix: str, confidence: float) -> None:
    """Add ``<prefix>rate``, ``<prefix>low`` and ``<prefix>high`` (Wilson) to ``table`` in place."""
    k = table[successes].to_numpy(dtype=np.float64)
    n = table[runs].to_numpy(dtype=np.float64)
    low, high = wilson_interval(k, n, confidence) if len(table) else (np.zeros(0), np.zeros(0))
    table[f"{prefix}rate"] = np.where(n > 0, k / np.where(n > 0, n, 1), np.nan)
    table[f"{prefix}low"] = np.asarray(low, dtype=np.float64)
    table[f"{prefix}high"] = np.asarray(high, dtype=np.float64)


def _success_over_inits(rows: pd.DataFrame, by: list, grid, confidence: float) -> pd.DataFrame:
    """Per group ``by`` of ``rows`` (with ``_ok``): the pooled rate and the best grid point's.

    Columns: ``by``, :data:`RATE_COLUMNS`, ``best_<grid column>``, :data:`BEST_COLUMNS`,
    ``best_acc`` (best non-diverged accuracy of the group) and ``run_id`` (its run). A grid
    point is one value of the ``grid`` columns; its runs differ only in their init.
    """
    grid = list(grid)
    best_grid = [f"best_{c}" for c in grid]
    cols = by + RATE_COLUMNS + best_grid + BEST_COLUMNS + ["best_acc", "run_id"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    rows = rows.assign(_acc=rows["train_acc"].where(~rows["diverged"]), _succ=rows["_ok"].astype(int))
    points = rows.groupby(by + grid, sort=False, dropna=False).agg(
        runs=("run_id", "size"), successes=("_succ", "sum"), acc=("_acc", "max")).reset_index()
    points["rate"] = points["successes"] / points["runs"]
    order = [False, False, False] + [c != "schedule" for c in grid]   # ties as search.phases.mask_rates
    points = points.sort_values(["successes", "rate", "acc"] + grid, ascending=order, na_position="last", kind="stable")
    best = points.drop_duplicates(by, keep="first")
    best = best.rename(columns={**{c: f"best_{c}" for c in grid}, "runs": "best_runs",
                                "successes": "best_successes"})[by + best_grid + ["best_runs", "best_successes"]]
    pooled = points.groupby(by, sort=False, dropna=False).agg(
        runs=("runs", "sum"), inits=("runs", "min"), successes=("successes", "sum")).reset_index()
    top = rows.sort_values(["_acc", "run_id"], ascending=[False, True], na_position="last", kind="stable")
    top = top.drop_duplicates(by, keep="first")
    top = top.assign(best_acc=top["_acc"], run_id=top["run_id"].where(top["_acc"].notna(), None))
    top = top[by + ["best_acc", "run_id"]]
    out = pooled.merge(best, on=by, how="left").merge(top, on=by, how="left")
    for c in ("runs", "inits", "successes", "best_runs", "best_successes"):
        out[c] = out[c].astype(int)
    _with_interval(out, "successes", "runs", "", confidence)
    _with_interval(out, "best_successes", "best_runs", "best_", confidence)
    return out[cols]


def _mask_label(df: pd.DataFrame) -> pd.Series:
    """A mask's key as text (the hex of its packed bits, as in the search's ``params``), or
    ``run:<run_id>`` for a row without a mask (the same identity as :func:`_mask_key`)."""
    return pd.Series([bytes(b).hex() if b is not None else f"run:{r}" for b, r in zip(df["mask_bits"], df["run_id"])],
                     index=df.index, dtype=object)


def mask_success(df: pd.DataFrame, target: float, confidence: float = 0.95, kind: str = SEARCH_KIND) -> pd.DataFrame:
    """Success over inits of every searched mask: one row per (widths, mask) of ``kind`` rows.

    ``kind`` is ``"search_masks"`` (phase 2) or ``"search_widths"`` (phase 1, where an
    architecture is its one dense mask, ``mask == "dense"``). Columns: ``widths``, ``mask`` (hex
    key), ``weight_nnz``; ``runs``, ``inits`` (K: fewest runs at one grid point ``lr`` x
    ``schedule``), ``successes``, ``rate`` (pooled over all its runs), ``low``/``high``
    (Wilson at ``confidence``); its best grid point ``best_lr``, ``best_schedule``, ``best_runs``,
    ``best_successes``, ``best_rate``, ``best_low``, ``best_high``; ``best_acc`` and ``run_id``
    of its best non-diverged run. Sorted by widths, nnz and mask.
    """
    return _mask_success(_kind_rows(df, kind, target), confidence)


def _mask_success(rows: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """:func:`mask_success` of the rows of :func:`_kind_rows` (``mask``; ``_ok``: reached)."""
    by = ["widths", "mask"]
    table = _success_over_inits(rows, by, SEARCH_GRID, confidence)
    nnz = rows.groupby(by, sort=False)["weight_nnz"].max().rename("weight_nnz").reset_index()
    table = table.merge(nnz, on=by, how="left") if len(table) else table.assign(weight_nnz=[])
    cols = by + ["weight_nnz"] + [c for c in table.columns if c not in by + ["weight_nnz"]]
    return table.sort_values(["widths", "weight_nnz", "mask"], kind="stable").reset_index(drop=True)[cols]


def level_success(df: pd.DataFrame, target: float, confidence: float = 0.95, *,
                  inputs: TargetInputs | None = None) -> pd.DataFrame:
    """Per (widths, weight_nnz) of the search's masks: how reliably the level's best mask reaches.

    Columns: ``masks``, ``runs``, ``inits`` (fewest runs of one mask at one grid point),
    ``masks_reaching`` (masks with at least one run reaching ``target``); the level's best mask
    (highest ``best_rate``, then ``best_successes``, ``best_acc``, the larger key, as the
    search's levels choose it):
    ``mask``, ``best_lr``, ``best_schedule``, ``best_runs``, ``best_successes``, ``best_rate``,
    ``best_low``, ``best_high``, ``best_acc`` and ``run_id`` (of :func:`mask_success`).
    ``inputs``: the :class:`TargetInputs` of the same frame, target and confidence, to share.
    """
    return _inputs(inputs, df, target, confidence).levels.copy()


def _levels(per_mask: pd.DataFrame) -> pd.DataFrame:
    """:func:`level_success` from the :func:`mask_success` table."""
    cols = ["widths", "weight_nnz", "masks", "runs", "inits", "masks_reaching", "mask", "best_lr", "best_schedule",
            *BEST_COLUMNS, "best_acc", "run_id"]
    if per_mask.empty:
        return pd.DataFrame(columns=cols)
    by = ["widths", "weight_nnz"]
    per_mask = per_mask.assign(_reaching=(per_mask["successes"] > 0).astype(int))
    levels = per_mask.groupby(by, sort=True).agg(masks=("mask", "size"), runs=("runs", "sum"), inits=("inits", "min"),
                                                 masks_reaching=("_reaching", "sum")).reset_index()
    best = per_mask.sort_values(["best_rate", "best_successes", "best_acc", "mask"], ascending=False,
                                na_position="last", kind="stable")
    best = best.drop_duplicates(by, keep="first")[by + cols[6:]]
    out = levels.merge(best, on=by, how="left")
    return out.sort_values(by, kind="stable").reset_index(drop=True)[cols]


# -- the search ------------------------------------------------------------------------------
def sparsest_search(df: pd.DataFrame, target: float, min_rate: float | None = None,
                    confidence: float = 0.95, *, inputs: TargetInputs | None = None) -> pd.DataFrame:
    """Per searched width tuple: the fewest weight nnz of a mask reaching ``target``.

    Columns: ``widths``, ``search_nnz`` (fewest nnz at which *some* run reached the target; NaN
    when none did), ``masks_reaching`` (distinct masks at that nnz with at least one run reaching
    the target), ``masks_at_nnz`` (distinct masks tried at that nnz), ``masks_tried`` and ``runs``
    (all levels), ``best_acc``, ``effective_nnz`` and ``run_id`` of the best run at that nnz.
    (Eligible search masks have no dead units, so their effective nnz is their nnz.)

    How reliable that level is, over inits (:func:`level_success`): ``inits`` (K, the fewest runs
    of one mask at one grid point at that level; over every level when the target was never
    reached), ``level_runs`` (runs at that nnz), and the level's best mask at its best grid point:
    ``best_runs``, ``best_rate``, ``best_low``, ``best_high``.

    With ``min_rate`` (in (0, 1]) also the fewest nnz at which some mask's best-grid-point rate is
    at least ``min_rate``: ``rate_nnz`` (NaN if none), ``rate_masks`` (masks there that qualify),
    and the best of them: ``rate``, ``rate_low``, ``rate_high``, ``rate_runs``, ``rate_run_id``.

    ``inputs``: the :class:`TargetInputs` of the same frame, target, min_rate and confidence, to share.
    """
    return _inputs(inputs, df, target, confidence, min_rate).search.copy()


def _sparsest_search(inputs: TargetInputs) -> pd.DataFrame:
    """:func:`sparsest_search` of ``inputs``."""
    min_rate = inputs.min_rate
    if min_rate is not None and not 0 < min_rate <= 1:
        raise ValueError(f"min_rate must be in (0, 1], got {min_rate}")
    rows = inputs.search_rows
    cols = ["widths", "search_nnz", "effective_nnz", "masks_reaching", "masks_at_nnz", "masks_tried", "runs",
            "best_acc", "run_id", "inits", "level_runs", "best_runs", "best_rate", "best_low", "best_high"]
    if min_rate is not None:
        cols += ["rate_nnz", "rate_masks", "rate", "rate_low", "rate_high", "rate_runs", "rate_run_id"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    per_mask, levels = inputs.per_mask, inputs.levels   # "mask": the identity of _mask_key within one architecture
    out = []
    for w, g in rows.groupby("widths", sort=True):
        masks_w = per_mask[has_widths(per_mask, w)]
        rec = {"widths": w, "search_nnz": np.nan, "effective_nnz": np.nan, "masks_reaching": 0, "masks_at_nnz": 0,
               "masks_tried": int(g["mask"].nunique()), "runs": len(g), "best_acc": np.nan, "run_id": None,
               "inits": int(masks_w["inits"].min()), "level_runs": 0, "best_runs": 0, "best_rate": np.nan,
               "best_low": np.nan, "best_high": np.nan}
        ok = g[g["_ok"]]
        if not ok.empty:
            nnz = ok["weight_nnz"].min()
            level_ok = ok[ok["weight_nnz"] == nnz]
            best = _best_run(level_ok)
            lev = levels[has_widths(levels, w) & (levels["weight_nnz"] == nnz)].iloc[0]
            rec.update(search_nnz=nnz, effective_nnz=best["effective_nnz"],
                       masks_reaching=int(level_ok["mask"].nunique()),
                       masks_at_nnz=int(g.loc[g["weight_nnz"] == nnz, "mask"].nunique()),
                       best_acc=best["train_acc"], run_id=best["run_id"], inits=int(lev["inits"]),
                       level_runs=int(lev["runs"]), best_runs=int(lev["best_runs"]), best_rate=lev["best_rate"],
                       best_low=lev["best_low"], best_high=lev["best_high"])
        if min_rate is not None:
            rec.update(rate_nnz=np.nan, rate_masks=0, rate=np.nan, rate_low=np.nan, rate_high=np.nan, rate_runs=0,
                       rate_run_id=None)
            good = masks_w[masks_w["best_rate"] >= min_rate]
            if not good.empty:
                nnz = good["weight_nnz"].min()
                lev = levels[has_widths(levels, w) & (levels["weight_nnz"] == nnz)].iloc[0]
                rec.update(rate_nnz=nnz, rate_masks=int((good["weight_nnz"] == nnz).sum()), rate=lev["best_rate"],
                           rate_low=lev["best_low"], rate_high=lev["best_high"], rate_runs=int(lev["best_runs"]),
                           rate_run_id=lev["run_id"])
        out.append(rec)
    table = pd.DataFrame(out, columns=cols)
    return table.sort_values(["search_nnz", "widths"], na_position="last", kind="stable").reset_index(drop=True)


def embeds(small, large) -> bool:
    """Whether architecture ``small`` is a sub-architecture of ``large`` (same depth, all widths <=)."""
    small, large = widths_key(small), widths_key(large)
    return len(small) == len(large) and all(a <= b for a, b in zip(small, large))


def search_bound(search: pd.DataFrame, widths) -> float:
    """The fewest nnz of :func:`sparsest_search` over searched architectures embedding in ``widths``."""
    vals = [n for w, n in zip(search["widths"], search["search_nnz"]) if embeds(w, widths) and not pd.isna(n)]
    return float(min(vals)) if vals else np.nan


def smallest_dense(df: pd.DataFrame, target: float, confidence: float = 0.95) -> pd.DataFrame:
    """Phase 1: dense sub-architectures (``kind == "search_widths"``) reaching ``target``.

    One row per architecture with ``runs``, ``reached_runs``, ``best_acc`` and ``dense_nnz``
    (its weight count), sorted by weight count; ``minimal`` marks those with no reaching
    architecture strictly inside them (the paper's candidates). Success over inits, as
    :func:`mask_success` with ``kind="search_widths"``: ``inits``, ``rate``, ``low``, ``high``
    (pooled over the grid) and the best grid point's ``best_lr``, ``best_schedule``,
    ``best_runs``, ``best_successes``, ``best_rate``, ``best_low``, ``best_high``.
    """
    rates = mask_success(df, target, confidence, kind=DENSE_KIND)
    cols = ["widths", "dense_nnz", "runs", "reached_runs", "best_acc", "minimal", "inits", "rate", "low", "high",
            "best_lr", "best_schedule", *BEST_COLUMNS]
    if rates.empty:
        return pd.DataFrame(columns=cols)
    table = rates.assign(dense_nnz=[dense_weight_count(w) for w in rates["widths"]], reached_runs=rates["successes"])
    table["best_acc"] = table["best_acc"].where(table["reached_runs"] > 0)   # of the reaching runs
    good = [w for w, r in zip(table["widths"], table["reached_runs"]) if r > 0]
    table["minimal"] = [r > 0 and not any(v != w and embeds(v, w) for v in good)
                        for w, r in zip(table["widths"], table["reached_runs"])]
    return table.sort_values(["dense_nnz", "widths"], kind="stable").reset_index(drop=True)[cols]


# -- the pruners -----------------------------------------------------------------------------
def success_rates(df: pd.DataFrame, target: float, confidence: float = 0.95, *,
                  inputs: TargetInputs | None = None) -> pd.DataFrame:
    """Per (widths, method, level): ``runs``, ``reached_runs`` and ``success_rate`` (their ratio).

    The level is the budget ``target_nnz`` (achieved ``weight_nnz`` when there is none), so runs
    of every hyper-parameter and seed at one budget are pooled; ``low``/``high`` is the Wilson
    interval of that pooled rate. Also the mean achieved ``weight_nnz`` and ``effective_nnz`` and
    the best ``train_acc`` of non-diverged runs; ``inits`` (fewest runs at one grid point
    ``lr`` x ``schedule`` x ``params``) and the best grid point: ``best_lr``,
    ``best_schedule``, ``best_runs``, ``best_successes``, ``best_rate``, ``best_low``,
    ``best_high``. ``inputs``: the :class:`TargetInputs` of the same frame, target and
    confidence, to share.
    """
    return _inputs(inputs, df, target, confidence).rates.copy()


def _success_rates(inputs: TargetInputs) -> pd.DataFrame:
    """:func:`success_rates` of ``inputs``."""
    rows, confidence = inputs.prune_rows, inputs.confidence
    cols = ["widths", "method", "level", "runs", "reached_runs", "success_rate", "low", "high", "diverged_runs",
            "mean_weight_nnz", "mean_effective_nnz", "best_acc", "inits", "best_lr", "best_schedule", *BEST_COLUMNS]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    rows = rows.assign(_acc=rows["train_acc"].where(~rows["diverged"]))
    by = ["widths", "method", "level"]
    g = rows.groupby(by, sort=True)
    out = g.agg(runs=("run_id", "size"), reached_runs=("_ok", "sum"), diverged_runs=("diverged", "sum"),
                mean_weight_nnz=("weight_nnz", "mean"), mean_effective_nnz=("effective_nnz", "mean"),
                best_acc=("_acc", "max")).reset_index()
    out["reached_runs"] = out["reached_runs"].astype(int)
    out["diverged_runs"] = out["diverged_runs"].astype(int)
    out["success_rate"] = out["reached_runs"] / out["runs"]
    _with_interval(out, "reached_runs", "runs", "_", confidence)
    out = out.rename(columns={"_low": "low", "_high": "high"})
    grid = _success_over_inits(rows.drop(columns="_acc"), by, PRUNE_GRID, confidence)
    out = out.merge(grid[by + ["inits", "best_lr", "best_schedule", *BEST_COLUMNS]], on=by, how="left")
    return out[cols]


def _level_of_rate(rates: pd.DataFrame, min_rate: float) -> pd.Series | None:
    """The row of ``rates`` (one method's :func:`success_rates`) at the fewest level whose best
    grid point reaches ``min_rate``; None when no level does."""
    good = rates[rates["best_rate"] >= min_rate]
    return good.sort_values("level", kind="stable").iloc[0] if len(good) else None


def method_frontier(df: pd.DataFrame, target: float, min_rate: float | None = None,
                    confidence: float = 0.95, *, inputs: TargetInputs | None = None) -> pd.DataFrame:
    """Per (widths, method): the sparsest level at which the method reached ``target``.

    Best over hyper-parameters and seeds. Columns: ``runs``, ``reached_runs``, ``min_level``
    (smallest budget with a run reaching the target), ``min_weight_nnz`` and
    ``min_effective_nnz`` (smallest achieved counts among reaching runs), ``success_rate`` (at
    ``min_level``, pooled over its hyper-parameters and seeds) with its Wilson ``low``/``high``
    and ``level_runs`` (the runs at ``min_level``), ``inits`` and the best grid point there
    (``best_runs``, ``best_successes``, ``best_rate``, ``best_low``, ``best_high``),
    ``search_nnz`` (the bound of :func:`search_bound`), ``ratio`` (``min_weight_nnz /
    search_nnz``) and ``run_id`` (sparsest reaching run, ties broken by accuracy then id). A
    method that never reached the target has NaN levels, ratio and interval.

    With ``min_rate``: ``rate_level``, the fewest level whose best grid point reaches the
    target in at least ``min_rate`` of its runs (NaN if none), its ``rate``, ``rate_low``,
    ``rate_high``, ``rate_runs``; ``rate_search_nnz`` (the search's ``rate_nnz`` over the
    architectures embedding in this one) and ``rate_ratio`` (``rate_level / rate_search_nnz``).

    ``inputs``: the :class:`TargetInputs` of the same frame, target, min_rate and confidence, to share.
    """
    return _inputs(inputs, df, target, confidence, min_rate).frontier.copy()


def _method_frontier(inputs: TargetInputs) -> pd.DataFrame:
    """:func:`method_frontier` of ``inputs``."""
    rows, min_rate = inputs.prune_rows, inputs.min_rate
    cols = ["widths", "method", "runs", "reached_runs", "min_level", "min_weight_nnz", "min_effective_nnz",
            "success_rate", "low", "high", "level_runs", "inits", *BEST_COLUMNS, "search_nnz", "ratio", "best_acc",
            "run_id"]
    if min_rate is not None:
        cols += ["rate_level", "rate", "rate_low", "rate_high", "rate_runs", "rate_search_nnz", "rate_ratio"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    search = inputs.search
    rate_bound = (search[["widths", "rate_nnz"]].rename(columns={"rate_nnz": "search_nnz"})
                  if min_rate is not None else None)
    rates = inputs.rates
    at = rates.set_index(["widths", "method", "level"])
    out = []
    for (w, m), g in rows.groupby(["widths", "method"], sort=True):
        ok = g[g["_ok"]]
        rec = {"widths": w, "method": m, "runs": len(g), "reached_runs": len(ok), "min_level": np.nan,
               "min_weight_nnz": np.nan, "min_effective_nnz": np.nan, "success_rate": 0.0, "low": np.nan,
               "high": np.nan, "level_runs": 0, "inits": np.nan, "best_runs": 0, "best_successes": 0,
               "best_rate": np.nan, "best_low": np.nan, "best_high": np.nan,
               "search_nnz": search_bound(search, w), "ratio": np.nan, "best_acc": np.nan, "run_id": None}
        if not ok.empty:
            best = _best_run(ok[ok["weight_nnz"] == ok["weight_nnz"].min()])
            level = ok["level"].min()
            r = at.loc[(w, m, level)]
            rec.update(min_level=level, min_weight_nnz=best["weight_nnz"],
                       min_effective_nnz=ok["effective_nnz"].min(), success_rate=float(r["success_rate"]),
                       low=r["low"], high=r["high"], level_runs=int(r["runs"]), inits=int(r["inits"]),
                       **{c: r[c] for c in BEST_COLUMNS}, best_acc=best["train_acc"], run_id=best["run_id"])
            if rec["search_nnz"] > 0:
                rec["ratio"] = rec["min_weight_nnz"] / rec["search_nnz"]
        if min_rate is not None:
            mine = rates[has_widths(rates, w) & (rates["method"] == m)]
            r = _level_of_rate(mine, min_rate)
            bound = search_bound(rate_bound, w)
            rec.update(rate_level=np.nan, rate=np.nan, rate_low=np.nan, rate_high=np.nan, rate_runs=0,
                       rate_search_nnz=bound, rate_ratio=np.nan)
            if r is not None:
                rec.update(rate_level=r["level"], rate=r["best_rate"], rate_low=r["best_low"],
                           rate_high=r["best_high"], rate_runs=int(r["best_runs"]))
                if bound > 0:
                    rec["rate_ratio"] = r["level"] / bound
        out.append(rec)
    return pd.DataFrame(out, columns=cols)


def headline(df: pd.DataFrame, target: float, methods=None, min_rate: float | None = None,
             confidence: float = 0.95, *, inputs: TargetInputs | None = None) -> pd.DataFrame:
    """The audit's headline: the search's sparsest models next to every method's sparsest run.

    One row per searched architecture (``method == "search"``) and per (widths, method) of the
    pruners, plus one ``"no runs"`` row for every name in ``methods`` without rows. ``nnz`` is
    the fewest weight nnz reaching ``target``; ``rank`` orders all rows by it (ties share a
    rank, the search listed first); ``status`` is ``"ok"``, ``"never reached"`` (NaN nnz) or
    ``"no runs"``. ``search_nnz`` and ``ratio`` refer to :func:`search_bound` of the row's
    architecture. For a method, ``success_rate`` is the fraction of its runs at its sparsest
    reaching budget that reach the target; for the search, the fraction of distinct masks at its
    sparsest level that reach it (best over the grid).

    Success over inits at ``nnz``, comparable between the rows: ``rate`` with Wilson ``low``/
    ``high`` over ``rate_runs`` runs (K = ``inits`` per grid point) is the best grid point's rate
    of the level's best mask (search) or of the method's sparsest reaching budget. With
    ``min_rate``: ``rate_nnz``, the fewest nnz where that rate is at least ``min_rate``
    (:func:`sparsest_search`, :func:`method_frontier`), and ``rate_ratio`` against the search's.

    ``inputs``: the :class:`TargetInputs` of the same frame, target, min_rate and confidence, to share.
    """
    cols = ["rank", "method", "widths", "nnz", "effective_nnz", "search_nnz", "ratio", "success_rate",
            "rate", "low", "high", "rate_runs", "inits", "runs", "reached_runs", "best_acc", "status", "run_id"]
    if min_rate is not None:
        cols += ["rate_nnz", "rate_ratio"]
    inputs = _inputs(inputs, df, target, confidence, min_rate)
    search, front = inputs.search, inputs.frontier
    rate_bound = (search[["widths", "rate_nnz"]].rename(columns={"rate_nnz": "search_nnz"})
                  if min_rate is not None else None)
    rows = []
    for _, s in search.iterrows():
        bound = search_bound(search, s["widths"])   # a smaller searched architecture may be sparser
        rec = {"method": SEARCH_LABEL, "widths": s["widths"], "nnz": s["search_nnz"],
               "effective_nnz": s["effective_nnz"], "search_nnz": bound,
               "ratio": s["search_nnz"] / bound if bound > 0 else np.nan,
               "success_rate": (s["masks_reaching"] / s["masks_at_nnz"]) if s["masks_at_nnz"] else np.nan,
               "rate": s["best_rate"], "low": s["best_low"], "high": s["best_high"], "rate_runs": s["best_runs"],
               "inits": s["inits"], "runs": s["runs"], "reached_runs": s["masks_reaching"], "best_acc": s["best_acc"],
               "status": "ok" if not pd.isna(s["search_nnz"]) else NEVER, "run_id": s["run_id"], "_o": 0}
        if min_rate is not None:
            rb = search_bound(rate_bound, s["widths"])
            rec.update(rate_nnz=s["rate_nnz"], rate_ratio=s["rate_nnz"] / rb if rb > 0 else np.nan)
        rows.append(rec)
    for _, f in front.iterrows():
        rec = {"method": f["method"], "widths": f["widths"], "nnz": f["min_weight_nnz"],
               "effective_nnz": f["min_effective_nnz"], "search_nnz": f["search_nnz"], "ratio": f["ratio"],
               "success_rate": f["success_rate"], "rate": f["best_rate"], "low": f["best_low"],
               "high": f["best_high"], "rate_runs": f["best_runs"], "inits": f["inits"], "runs": f["runs"],
               "reached_runs": f["reached_runs"], "best_acc": f["best_acc"],
               "status": "ok" if f["reached_runs"] else NEVER, "run_id": f["run_id"], "_o": 1}
        if min_rate is not None:
            rec.update(rate_nnz=f["rate_level"], rate_ratio=f["rate_ratio"])
        rows.append(rec)
    present = set(front["method"]) if len(front) else set()
    if len(front):  # an expected base name (``random``) is present through its variants (``random-erk``)
        present |= {m.split("-")[0] for m in front["method"]}
    for m in methods or ():
        if m not in present and m != SEARCH_LABEL:
            rows.append({"method": m, "widths": (), "nnz": np.nan, "effective_nnz": np.nan, "search_nnz": np.nan,
                         "ratio": np.nan, "success_rate": np.nan, "rate": np.nan, "low": np.nan, "high": np.nan,
                         "rate_runs": 0, "inits": np.nan, "runs": 0, "reached_runs": 0, "best_acc": np.nan,
                         "status": NO_RUNS, "run_id": None, "rate_nnz": np.nan, "rate_ratio": np.nan, "_o": 2})
    if not rows:
        return pd.DataFrame(columns=cols)
    table = pd.DataFrame(rows)
    table["rank"] = table["nnz"].rank(method="min").astype("Int64")
    table = table.sort_values(["nnz", "_o", "method", "widths"], na_position="last", kind="stable")
    return table[cols].reset_index(drop=True)


# -- what was tried --------------------------------------------------------------------------
def best_accuracy(df: pd.DataFrame) -> pd.DataFrame:
    """What was tried and the best it reached, whatever the target: one row per searched
    architecture (``method == "search"``, phase 2), per dense architecture of phase 1 (``"dense"``)
    and per (widths, method) of the pruners, the search first.

    Columns: ``method``, ``widths``, ``runs``, ``diverged_runs``, ``levels`` (distinct nnz levels
    tried: the search's mask sizes, a pruner's budgets), ``fewest_nnz`` and ``most_nnz`` (the
    sparsest and densest level tried), ``best_acc`` (best train accuracy of a non-diverged run;
    NaN when every run diverged), ``best_nnz`` (that run's weight nnz; ties: fewer nnz, then the
    smaller run id), ``best_at_fewest`` (best accuracy at the sparsest level) and ``run_id``. The
    audit lists it for a target that no run reached.
    """
    df = normalised(df)
    check_one_dataset(df)
    cols = ["method", "widths", "runs", "diverged_runs", "levels", "fewest_nnz", "most_nnz", "best_acc", "best_nnz",
            "best_at_fewest", "run_id"]
    out = []
    for kind in (SEARCH_KIND, DENSE_KIND, PRUNE_KIND):
        rows = _of_kind(df, kind)
        if rows.empty:
            continue
        level = rows["target_nnz"].where(rows["target_nnz"].notna(), rows["weight_nnz"]) if kind == PRUNE_KIND \
            else rows["weight_nnz"]
        rows = rows.assign(_level=level, _acc=rows["train_acc"].where(~rows["diverged"]),
                           _method=SEARCH_LABEL if kind == SEARCH_KIND else rows["method"].fillna(""))
        for (m, w), g in rows.groupby(["_method", "widths"], sort=True):
            fewest = g["_level"].min()
            rec = {"method": m, "widths": w, "runs": len(g), "diverged_runs": int(g["diverged"].sum()),
                   "levels": int(g["_level"].nunique()), "fewest_nnz": fewest, "most_nnz": g["_level"].max(),
                   "best_acc": np.nan, "best_nnz": np.nan, "best_at_fewest": np.nan, "run_id": None}
            live = g[g["_acc"].notna()]
            if len(live):
                best = live.sort_values(["_acc", "weight_nnz", "run_id"], ascending=[False, True, True],
                                        na_position="last", kind="stable").iloc[0]
                at = live.loc[live["_level"] == fewest, "_acc"]
                rec.update(best_acc=best["_acc"], best_nnz=best["weight_nnz"], run_id=best["run_id"],
                           best_at_fewest=at.max() if len(at) else np.nan)
            out.append(rec)
    return pd.DataFrame(out, columns=cols)


# -- effective sparsity ----------------------------------------------------------------------
def with_mask_counts(df: pd.DataFrame) -> pd.DataFrame:
    """A normalised copy whose missing ``weight_nnz``/``effective_nnz``/``dead_units`` are computed
    from the masks."""
    df = df.copy() if is_normalised(df) else _normalise(df)
    need = df[["weight_nnz", "effective_nnz", "dead_units"]].isna().any(axis=1) & df["mask_bits"].notna()
    for i in df.index[need]:
        counts = mask_counts(row_masks(df.loc[i]))
        for c in ("weight_nnz", "effective_nnz", "dead_units"):
            if pd.isna(df.at[i, c]):
                df.at[i, c] = float(counts[c])
    return df


def effective_sparsity(df: pd.DataFrame) -> pd.DataFrame:
    """Nominal against effective nnz (§5) per (kind, widths, method, level).

    ``inactive`` = ``weight_nnz - effective_nnz``: nonzero weights on no input-to-output path.
    Columns are means over runs, plus ``runs_with_inactive`` and ``runs_with_dead`` (fractions).
    """
    df = with_mask_counts(df)
    cols = ["kind", "widths", "method", "level", "runs", "weight_nnz", "effective_nnz", "inactive",
            "inactive_frac", "dead_units", "runs_with_inactive", "runs_with_dead"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["level"] = df["target_nnz"].where(df["target_nnz"].notna(), df["weight_nnz"])
    df["inactive"] = df["weight_nnz"] - df["effective_nnz"]
    df["_any_inactive"] = df["inactive"] > 0
    df["_any_dead"] = df["dead_units"] > 0
    df["kind"] = df["kind"].fillna("")
    df["method"] = df["method"].fillna("")
    out = df.groupby(["kind", "widths", "method", "level"], sort=True, dropna=False).agg(
        runs=("run_id", "size"), weight_nnz=("weight_nnz", "mean"), effective_nnz=("effective_nnz", "mean"),
        inactive=("inactive", "mean"), dead_units=("dead_units", "mean"),
        runs_with_inactive=("_any_inactive", "mean"), runs_with_dead=("_any_dead", "mean")).reset_index()
    out["inactive_frac"] = out["inactive"] / out["weight_nnz"].where(out["weight_nnz"] > 0)
    return out[cols]


# -- curves ----------------------------------------------------------------------------------
def overparam_curve(df: pd.DataFrame, target: float, *, inputs: TargetInputs | None = None) -> pd.DataFrame:
    """Smallest nnz reaching ``target`` against the starting width of the pruned network.

    One row per (method, widths) of the pruner runs: ``start_width`` (the widest hidden layer;
    the hidden width of a uniform MLP), ``dense_nnz`` (weights before pruning), ``nnz``
    (fewest weight nnz reaching the target, NaN if never), ``effective_nnz`` and the search
    bound ``search_nnz``. Sorted by method and width. ``inputs``: the :class:`TargetInputs` of
    the same frame and target (confidence 0.95; any min_rate), to share.
    """
    front = _inputs(inputs, df, target).frontier
    cols = ["method", "widths", "start_width", "dense_nnz", "nnz", "effective_nnz", "search_nnz", "runs"]
    if front.empty:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame({
        "method": front["method"], "widths": front["widths"],
        "start_width": [max(w[1:-1]) if len(w) > 2 else 0 for w in front["widths"]],
        "dense_nnz": [dense_weight_count(w) for w in front["widths"]],
        "nnz": front["min_weight_nnz"], "effective_nnz": front["min_effective_nnz"],
        "search_nnz": front["search_nnz"], "runs": front["runs"]})
    return out.sort_values(["method", "start_width", "dense_nnz"], kind="stable").reset_index(drop=True)[cols]


def accuracy_vs_nnz(df: pd.DataFrame) -> pd.DataFrame:
    """One point per non-diverged run: ``kind``, ``method``, ``widths``, ``weight_nnz``,
    ``effective_nnz``, ``train_acc`` (the scatter of the Pareto plot)."""
    df = normalised(df)
    df = df[~df["diverged"] & df["train_acc"].notna() & df["weight_nnz"].notna()]
    cols = ["run_id", "kind", "method", "widths", "target_nnz", "weight_nnz", "effective_nnz", "train_acc"]
    return df[cols].reset_index(drop=True)


def pareto_front(points: pd.DataFrame, x: str = "weight_nnz", y: str = "train_acc", by=None) -> pd.DataFrame:
    """The staircase of best ``y`` at or below each ``x`` (non-dominated points), per group ``by``.

    Returns ``[by..., x, y]`` rows of the non-dominated points only: each has strictly higher
    ``y`` than every point with smaller or equal ``x``.
    """
    by = [by] if isinstance(by, str) else list(by or [])
    cols = by + [x, y]
    if points.empty:
        return pd.DataFrame(columns=cols)
    out = []
    groups = points.groupby(by, sort=True) if by else [((), points)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        best = g.groupby(x)[y].max().sort_index()
        run = -np.inf
        for xv, yv in best.items():
            if yv > run:
                run = yv
                out.append(dict(zip(by, key), **{x: xv, y: yv}))
    return pd.DataFrame(out, columns=cols)


def search_frontier(df: pd.DataFrame) -> pd.DataFrame:
    """The search's accuracy/nnz Pareto front (pooled over searched architectures)."""
    pts = accuracy_vs_nnz(df)
    return pareto_front(pts[pts["kind"] == SEARCH_KIND])


def overlap_with_sparsest(df: pd.DataFrame, target: float, exact_max_width: int = EXACT_MAX_WIDTH, *,
                          inputs: TargetInputs | None = None) -> pd.DataFrame:
    """Overlap of every pruner run reaching ``target`` with the search's sparsest masks.

    A run's mask is compacted (:func:`compact_masks`: only its effective weights, units that
    carry none removed) and compared with every distinct sparsest search mask (fewest nnz
    reaching the target) of the searched architectures giving the run's :func:`search_bound`.
    ``shared`` is the best :func:`max_shared_weights` over them; ``shared_frac`` divides it by
    the search nnz; ``same_orbit`` is True when the run's effective mask *is* a sparsest mask up
    to hidden-unit symmetry (decided exactly: by the overlap, or by the search's canonical form
    beyond ``exact_max_width``); ``exact`` is False when ``shared`` is the heuristic lower bound.
    ``inputs``: the :class:`TargetInputs` of the same frame and target (confidence 0.95; any
    min_rate), to share.
    """
    cols = ["run_id", "method", "widths", "weight_nnz", "effective_nnz", "search_nnz", "shared",
            "shared_frac", "same_orbit", "exact"]
    inputs = _inputs(inputs, df, target)
    rows = inputs.prune_rows
    rows = rows[rows["_ok"] & rows["mask_bits"].notna()]
    search = inputs.search
    if rows.empty or search["search_nnz"].isna().all():
        return pd.DataFrame(columns=cols)
    srows = inputs.search_rows
    srows = srows[srows["_ok"] & srows["mask_bits"].notna()]
    sparsest = {}
    for _, s in search.dropna(subset=["search_nnz"]).iterrows():
        level = srows[has_widths(srows, s["widths"]) & (srows["weight_nnz"] == s["search_nnz"])]
        level = level.loc[~_mask_key(level).duplicated()]
        sparsest[s["widths"]] = [compact_masks(row_masks(r)) for _, r in level.iterrows()]
    out, seen = [], {}
    for _, r in rows.sort_values(["method", "widths", "run_id"]).iterrows():
        bound = search_bound(search, r["widths"])
        if pd.isna(bound):
            continue
        mine = compact_masks(row_masks(r))
        nnz = sum(int(m.sum()) for m in mine)
        key = (r["widths"], mask_widths(mine), pack_masks(mine)[0])
        if key not in seen:
            seen[key] = _best_overlap(mine, nnz, bound, r["widths"], search, sparsest, exact_max_width)
        best, exact, orbit = seen[key]
        if best < 0:
            continue
        out.append({"run_id": r["run_id"], "method": r["method"], "widths": r["widths"],
                    "weight_nnz": r["weight_nnz"], "effective_nnz": float(nnz), "search_nnz": bound,
                    "shared": best, "shared_frac": best / bound, "same_orbit": orbit, "exact": exact})
    return pd.DataFrame(out, columns=cols)


def _best_overlap(mine, nnz, bound, widths, search, sparsest, exact_max_width):
    """(shared, exact, same_orbit) of one compacted mask against the sparsest search masks."""
    best, exact, orbit = -1, True, False
    for w, n in zip(search["widths"], search["search_nnz"]):
        if n != bound or not embeds(w, widths):
            continue
        for theirs in sparsest.get(w, []):
            if len(mask_widths(theirs)) != len(mask_widths(mine)):
                continue
            n_theirs = sum(int(m.sum()) for m in theirs)
            shared, ex = max_shared_weights(mine, theirs, exact_max_width)
            if shared > best:
                best, exact = shared, ex
            orbit = orbit or nnz > 0 and ((shared == nnz == n_theirs) or (not ex and same_orbit(mine, theirs)))
            if orbit:  # nothing can share more
                return best, exact, orbit
    return best, exact, orbit


def overlap_summary(overlap: pd.DataFrame) -> pd.DataFrame:
    """Per (widths, method): runs compared, mean and max ``shared_frac``, runs in a sparsest orbit."""
    cols = ["widths", "method", "runs", "mean_shared_frac", "max_shared_frac", "same_orbit_runs", "all_exact"]
    if overlap.empty:
        return pd.DataFrame(columns=cols)
    out = overlap.groupby(["widths", "method"], sort=True).agg(
        runs=("run_id", "size"), mean_shared_frac=("shared_frac", "mean"), max_shared_frac=("shared_frac", "max"),
        same_orbit_runs=("same_orbit", "sum"), all_exact=("exact", "all")).reset_index()
    out["same_orbit_runs"] = out["same_orbit_runs"].astype(int)
    return out[cols]


# -- selecting runs --------------------------------------------------------------------------
def select_runs(df: pd.DataFrame, run_ids) -> pd.DataFrame:
    """The rows of ``run_ids`` in the order given; an id may be shortened to a unique prefix.

    Raises :class:`ResultsError` naming any id that matches no run, or several.
    """
    known = list(dict.fromkeys(df["run_id"]))
    known_set = set(known)
    resolved, missing, ambiguous = [], [], []
    for r in run_ids:
        if r in known_set:
            resolved.append(r)
            continue
        hits = [k for k in known if k.startswith(r)] if r else []
        if len(hits) == 1:
            resolved.append(hits[0])
        elif hits:
            ambiguous.append(r)
        else:
            missing.append(r)
    if missing:
        raise ResultsError(f"unknown run id{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if ambiguous:
        raise ResultsError(f"run id prefix {', '.join(ambiguous)} matches several runs; give more digits")
    by_id = df.drop_duplicates("run_id").set_index("run_id", drop=False)
    return by_id.loc[resolved].reset_index(drop=True)


def best_run(df: pd.DataFrame, method: str, target: float, widths=None) -> pd.Series:
    """The sparsest run of ``method`` reaching ``target`` (``"search"`` or ``"mask"``: the search).

    Fewest weight nnz, then highest accuracy, then smallest run id; optionally only rows of
    ``widths``. Raises :class:`ResultsError` when no such run reached the target.
    """
    df = normalised(df)
    if method in (SEARCH_LABEL, "mask"):
        rows = df[df["kind"] == SEARCH_KIND]
    else:
        rows = df[df["method"] == method]
    if widths is not None:
        rows = rows[has_widths(rows, widths)]
    if rows.empty:
        where = f" of widths {widths_label(widths)}" if widths is not None else ""
        raise ResultsError(f"no runs of method {method!r}{where} in the results")
    ok = rows[reached(rows, target)]
    if ok.empty:
        raise ResultsError(f"no run of method {method!r} reached train accuracy {target} "
                           f"(best {rows.loc[~rows['diverged'], 'train_acc'].max():.4f})")
    return _best_run(ok[ok["weight_nnz"] == ok["weight_nnz"].min()])


def model_from_row(row):
    """The trained network of a result row: ``MaskedMLP(widths, masks, params=weights)``."""
    from cubist.model import MaskedMLP
    if row.get("weights") is None or row.get("mask_bits") is None:
        raise ResultsError(f"run {row.get('run_id')} kept no weights or mask to rebuild it from")
    return MaskedMLP(widths_key(row["widths"]), row_masks(row), params=row_weights(row), init_width=None)


# -- how far each method is from the sparsest models, and what it found ----------------------
QUESTION_METHODS = ("pilot", "dwf", "lrr", "imp+pilot", "lrr+pilot")   # issue 12's new question, and combinations


def is_question_method(method) -> bool:
    """Whether ``method`` is PILoT, DWF, LRR, one of their combinations, or a labelled variant of one
    (``<name>-...``)."""
    return isinstance(method, str) and any(method == m or method.startswith(m + "-") for m in QUESTION_METHODS)


def _orbit_hex(masks) -> str | None:
    """The packed bits (hex) of the canonical representative of the masks' orbit under joint
    hidden-unit permutations, as the search stores an orbit's mask; None beyond the widths the
    canonical form supports."""
    from search.enumerate import canonical_mask
    try:
        return pack_masks(canonical_mask([np.asarray(m) for m in masks]))[0].hex()
    except ValueError:
        return None


def method_audit(df: pd.DataFrame, target: float, confidence: float = 0.95, *,
                 inputs: TargetInputs | None = None) -> pd.DataFrame:
    """Per (widths, method) of the pruners: how far from the search's sparsest, how often it
    reaches ``target``, how many weights lie on no input-to-output path, and whether its mask
    alone trains to the target from a fresh init.

    Columns, one row per (widths, method), sorted by widths then method:

    - ``runs``, ``reached_runs``; ``search_nnz`` (the bound of :func:`search_bound`), ``nnz`` (fewest
      weight nnz of a run reaching the target), ``level`` (its budget) and ``ratio`` (``nnz /
      search_nnz``), as :func:`method_frontier`;
    - ``level_runs``, ``level_successes``, ``level_rate``, ``level_low``, ``level_high``: every run at
      ``level`` (pooled over the grid and inits, Wilson interval at ``confidence``);
    - ``at_search``: the smallest budget tried at or above ``search_nnz`` (NaN if none), and
      ``at_runs``, ``at_successes``, ``at_rate``, ``at_low``, ``at_high`` of its runs;
    - ``runs_with_inactive`` (share of all runs with a nonzero weight on no input-to-output path,
      ``weight_nnz > effective_nnz``, §5), ``inactive`` (mean ``weight_nnz - effective_nnz``),
      ``dead_units`` (mean), ``reaching_with_inactive`` (share among the runs reaching the target);
    - mask or weights: ``retrain_masks`` (distinct masks of the reaching runs found among the
      search's rows of the same widths and the same kind of init: the mask itself, or, where both
      draw random inits, its orbit's representative under joint hidden-unit permutations, which
      then trains like it; with a fixed init only the mask itself from that init; ``matched_masks``:
      the reaching runs' distinct masks that found some; the rows of ``cubist search retrain --out``,
      kind ``search_retrain``, count as the search's, a run the search also trained once),
      ``retrain_runs``, ``retrain_successes``, ``retrain_rate``, ``retrain_low``, ``retrain_high``
      (those masks' runs, each from its own fresh init, pooled); ``reaching_masks`` (distinct masks of the
      reaching runs) and ``missing_run_ids`` (comma-joined ids of the reaching runs whose masks have no
      such rows, fewest nnz first, then by id: the runs for ``cubist search retrain``).

    ``inputs``: the :class:`TargetInputs` of the same frame, target and confidence, to share.
    """
    inputs = _inputs(inputs, df, target, confidence)
    cols = ["widths", "method", "runs", "reached_runs", "search_nnz", "nnz", "level", "ratio", "level_runs",
            "level_successes", "level_rate", "level_low", "level_high", "at_search", "at_runs", "at_successes",
            "at_rate", "at_low", "at_high", "runs_with_inactive", "inactive", "dead_units", "reaching_with_inactive",
            "reaching_masks", "matched_masks", "retrain_masks", "retrain_runs", "retrain_successes", "retrain_rate", "retrain_low",
            "retrain_high", "missing_run_ids"]
    rows = inputs.prune_rows
    if rows.empty:
        return pd.DataFrame(columns=cols)
    front = {(w, m): f for w, m, (_, f) in zip(inputs.frontier["widths"], inputs.frontier["method"],
                                              inputs.frontier.iterrows())}
    rates = inputs.rates
    srows = inputs.search_rows
    if not inputs.retrain_rows.empty:
        srows = pd.concat([srows, inputs.retrain_rows], ignore_index=True)
    srows = srows.assign(_init=_init_kind(srows["init"]), _succ=srows["_ok"].astype(int))
    # a retrained mask's run at a grid point the search also trained it at is the same run (same init):
    # counted once (the search's row comes first)
    srows = srows.loc[~srows.duplicated(["widths", "_init", "mask", "lr", "schedule", "seed"])]
    counts = srows.groupby(["widths", "_init", "mask"], sort=False).agg(runs=("run_id", "size"),
                                                                        successes=("_succ", "sum"))
    searched = {(w, i): g.droplevel([0, 1]) for (w, i), g in counts.groupby(level=[0, 1], sort=False)}
    rows = rows.assign(_inactive=rows["weight_nnz"] - rows["effective_nnz"])
    out = []
    for (w, m), g in rows.groupby(["widths", "method"], sort=True):
        f = front[(w, m)]
        mine = rates[has_widths(rates, w) & (rates["method"] == m)].sort_values("level", kind="stable")
        ok = g[g["_ok"]]
        rec = {"widths": w, "method": m, "runs": len(g), "reached_runs": len(ok), "search_nnz": f["search_nnz"],
               "nnz": f["min_weight_nnz"], "level": f["min_level"], "ratio": f["ratio"], "level_runs": 0,
               "level_successes": 0, "level_rate": np.nan, "level_low": np.nan, "level_high": np.nan,
               "at_search": np.nan, "at_runs": 0, "at_successes": 0, "at_rate": np.nan, "at_low": np.nan,
               "at_high": np.nan, "runs_with_inactive": float((g["_inactive"] > 0).mean()),
               "inactive": float(g["_inactive"].mean()), "dead_units": float(g["dead_units"].mean()),
               "reaching_with_inactive": float((ok["_inactive"] > 0).mean()) if len(ok) else np.nan,
               "reaching_masks": 0, "matched_masks": 0, "retrain_masks": 0, "retrain_runs": 0, "retrain_successes": 0,
               "retrain_rate": np.nan, "retrain_low": np.nan, "retrain_high": np.nan, "missing_run_ids": ""}
        for prefix, level in (("level", f["min_level"]), ("at", _first_at_or_above(mine["level"], f["search_nnz"]))):
            r = mine[mine["level"] == level]
            if pd.isna(level) or r.empty:
                continue
            r = r.iloc[0]
            rec.update({f"{prefix}_runs": int(r["runs"]), f"{prefix}_successes": int(r["reached_runs"]),
                        f"{prefix}_rate": r["success_rate"], f"{prefix}_low": r["low"], f"{prefix}_high": r["high"]})
            if prefix == "at":
                rec["at_search"] = level
        if len(ok):
            keyed = ok[ok["mask_bits"].notna()].sort_values(["weight_nnz", "run_id"], kind="stable")
            keyed = keyed.loc[~_mask_key(keyed).duplicated()]
            rec["reaching_masks"] = len(keyed)
            found, missing = {}, []
            for init, r in zip(_init_kind(keyed["init"]), (r for _, r in keyed.iterrows())):
                table, key = searched.get((w, init)), None
                if table is not None:   # the mask itself; under random inits also its orbit's representative
                    own = bytes(r["mask_bits"]).hex()
                    key = own if own in table.index or init != "random" else _orbit_hex(row_masks(r))
                if key is not None and key in table.index:
                    found[key] = table.loc[key]
                else:
                    missing.append(r["run_id"])
            rec["missing_run_ids"] = ",".join(missing)
            rec["matched_masks"] = len(keyed) - len(missing)
            if found:
                n = sum(int(v["runs"]) for v in found.values())
                k = sum(int(v["successes"]) for v in found.values())
                low, high = wilson_interval(k, n, confidence)
                rec.update(retrain_masks=len(found), retrain_runs=n, retrain_successes=k, retrain_rate=k / n,
                           retrain_low=float(low), retrain_high=float(high))
        out.append(rec)
    return pd.DataFrame(out, columns=cols)


def _init_kind(init: pd.Series) -> pd.Series:
    """``"random"`` for runs from their own random init (``init`` random or unrecorded), else the fixed
    init (``checkpoint:<id>``): a mask trained from init is compared only with runs of the same kind."""
    return pd.Series(["random" if not isinstance(v, str) or v == "random" else v for v in init],
                     index=init.index, dtype=object)


def _first_at_or_above(levels: pd.Series, bound) -> float:
    """The smallest of ``levels`` at or above ``bound`` (NaN when ``bound`` is NaN or none is)."""
    if pd.isna(bound):
        return np.nan
    above = levels[levels >= bound]
    return float(above.min()) if len(above) else np.nan


# -- a method's working point from a hyper-parameter sweep ------------------------------------
# Ties in successes and mean accuracy go to the simpler setting: fewer training epochs, then these flags in
# this order (1: the smaller value is simpler, -1: the larger). Methods not listed: fewer epochs, then the
# settings' order by name.
WORKING_POINT_ORDER = {"dwf": (("dwf_depth", 1), ("dwf_lambda", 1)),
                       "pilot": (("pilot_alpha0", 1), ("pilot_k", -1)),
                       "lrr": (("cycles", 1), ("rate", -1))}
WORKING_POINT_SPLIT = {"dwf": ("dwf_depth",)}   # one working point per value of these flags
CHANCE = 0.5   # the accuracy a diverged run counts with (the spiral's classes are balanced)


def _flag(key: str, value) -> str:
    """``--key value`` as ``cubist prune`` spells it (``--x/--no-x`` for booleans)."""
    name = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return name if value else "--no-" + key.replace("_", "-")
    if isinstance(value, float):
        return f"{name} {value:g}"
    return f"{name} {value}"


def working_points(df: pd.DataFrame, target: float = 0.95, confidence: float = 0.95, *,
                   order: dict = WORKING_POINT_ORDER, split: dict = WORKING_POINT_SPLIT) -> pd.DataFrame:
    """Every setting of every pruner in a hyper-parameter sweep, ranked, and the chosen one per method.

    A *setting* is one value of a run's ``params`` (the method's hyper-parameters); its runs are all
    its budgets, grid points (lr x schedule) and inits. Per ``method`` (and per value of the flags in
    ``split[method]``: DWF gets one working point per depth) the settings are ranked by

    1. ``successes``: runs reaching ``target`` (not diverged, ``train_acc >= target``), summed over
       the budgets (every setting of a sweep has the same runs, so this is its success rate);
    2. ``mean_acc``: mean train accuracy over its runs, a diverged run counted as :data:`CHANCE`;
    3. the simpler setting: fewer mean ``epochs`` trained (``metrics.epochs_trained``, else the
       row's ``epochs``), then ``order[method]`` (flag, direction), then the flags' text.

    Columns: ``method``, ``group`` (the split flags' text, "" without), ``rank`` (1 = the working
    point), ``chosen``, ``flags`` (the ``cubist prune`` flags of the setting: ``--method``, the flags of
    ``split`` and ``order`` and every other hyper-parameter that differs between the method's settings),
    ``budgets``, ``runs``,
    ``successes``, ``rate``, ``low``, ``high`` (Wilson at ``confidence``), ``mean_acc``,
    ``best_acc``, ``epochs``, ``params`` (JSON). Sorted by method, group and rank.
    """
    cols = ["method", "group", "rank", "chosen", "flags", "budgets", "runs", "successes", "rate", "low", "high",
            "mean_acc", "best_acc", "epochs", "params"]
    rows = _of_kind(df, PRUNE_KIND)
    if rows.empty:
        return pd.DataFrame(columns=cols)
    rows = rows.assign(_ok=reached(rows, target), _acc=rows["train_acc"].where(~rows["diverged"], CHANCE),
                       _live=rows["train_acc"].where(~rows["diverged"]),
                       _epochs=[_epochs_trained(mt, e) for mt, e in zip(rows["metrics"], rows["epochs"])],
                       params=rows["params"].fillna("{}"))
    out = []
    for m, g in rows.groupby("method", sort=True):
        settings = g.groupby("params", sort=True).agg(
            budgets=("target_nnz", "nunique"), runs=("run_id", "size"),
            successes=("_ok", "sum"), mean_acc=("_acc", "mean"), best_acc=("_live", "max"),
            epochs=("_epochs", "mean"), base=("method_base", "first")).reset_index()
        parsed = [json.loads(p) for p in settings["params"]]
        keys = sorted({k for p in parsed for k in p})
        varying = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in parsed}) > 1]
        by = [k for k in split.get(m, ()) if k in keys]
        swept = [k for k, _ in order.get(m, ()) if k in keys] + varying   # the ordered flags always shown
        shown = list(dict.fromkeys(by + swept))
        settings["flags"] = [" ".join([f"--method {b}"] + [_flag(k, p[k]) for k in shown if k in p])
                             for b, p in zip(settings["base"], parsed)]
        settings["group"] = [" ".join(_flag(k, p.get(k)) for k in by) for p in parsed]
        tie = [(k, d) for k, d in order.get(m, ()) if k in keys]
        for i, (k, d) in enumerate(tie):
            settings[f"_t{i}"] = [d * float(p.get(k, 0)) for p in parsed]
        settings["successes"] = settings["successes"].astype(int)
        settings = settings.sort_values(
            ["group", "successes", "mean_acc", "epochs"] + [f"_t{i}" for i in range(len(tie))] + ["flags"],
            ascending=[True, False, False, True] + [True] * len(tie) + [True], kind="stable")
        settings["rank"] = settings.groupby("group", sort=False).cumcount() + 1
        settings["chosen"] = settings["rank"] == 1
        settings["method"] = m
        _with_interval(settings, "successes", "runs", "", confidence)
        out.append(settings[cols])
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def _epochs_trained(metrics, epochs) -> float:
    """``metrics.epochs_trained`` of a row (all its training calls), else its ``epochs``."""
    if isinstance(metrics, str):
        try:
            v = json.loads(metrics).get("epochs_trained")
        except (ValueError, AttributeError):
            v = None
        if v is not None:
            return float(v)
    return float(epochs) if epochs is not None and not pd.isna(epochs) else np.nan
