"""``cubist audit``: the report comparing pruning with the exact sparsest models.

Reads result stores, computes the tables of :mod:`cubist.report.tables` for each target accuracy
(the paper's 95% and 99.5%; Zhang & Papyan, "Sparsest Models Elude Pruning", ICML 2024),
draws the Pareto plot, the over-parameterisation curve and the sparsest runs
(:mod:`cubist.report.plots`), and writes ``report.md`` and ``report.html`` (figures linked, PNG and
SVG side by side) into the output directory; the headline table is printed. A target that no run
reached is a finding, not an error: its section says so at the top and lists what was tried and the
best accuracy each method and the search reached (:func:`~cubist.report.tables.best_accuracy`);
the tables that need a reaching run show their ``never reached`` markers or are empty, and the
figures that need one are left out.

:func:`audit_tables`, :func:`write_report` and :func:`run_audit` are the library entry
points; :func:`run_quick_audit` is the small end-to-end audit behind ``--quick``.
"""
from __future__ import annotations

import html
import math
import os
import re
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np
import pandas as pd

from cubist.stats import DEFAULT_TARGET
from cubist.store import write_atomically
from cubist.version import __version__

from . import tables as A

DEFAULT_OUT = "audit"
BEST_RUNS_MAX = 6          # runs drawn side by side in the best-runs figure
DEFAULT_MIN_RATE = 0.5     # "reliably reaches": at its best grid point, in at least half of its inits
NEVER_LISTED = 8           # never-reaching (method, widths) named in the notes; beyond, only counted


# -- tables ----------------------------------------------------------------------------------
def audit_tables(df: pd.DataFrame, target: float, methods=None,
                 min_rate: float = DEFAULT_MIN_RATE) -> dict[str, pd.DataFrame]:
    """Every table of the report for one target, by name (all pure functions of ``df``).

    ``df`` is normalised once (not again when it comes from
    :func:`~cubist.report.tables.load_results`), and what several tables share (the search's
    rows, per-mask and per-level success and sparsest masks; the pruners' rows, success rates and
    frontier) once, in one :class:`~cubist.report.tables.TargetInputs`.
    """
    df = A.normalised(df)
    inputs = A.TargetInputs(df, target, min_rate)
    overlap = A.overlap_with_sparsest(df, target, inputs=inputs)
    levels = A.level_success(df, target, inputs=inputs)
    success = A.success_rates(df, target, inputs=inputs)
    return {
        "headline": A.headline(df, target, methods, min_rate, inputs=inputs),
        "search": A.sparsest_search(df, target, min_rate, inputs=inputs),
        "levels": levels,
        "dense": A.smallest_dense(df, target),
        "frontier": A.method_frontier(df, target, min_rate, inputs=inputs),
        "success": success,
        "by_nnz": success_by_nnz(levels, success),
        "effective": A.effective_sparsity(df[df["kind"] == A.PRUNE_KIND]),
        "overparam": A.overparam_curve(df, target, inputs=inputs),
        "overlap": overlap,
        "overlap_summary": A.overlap_summary(overlap),
        "best_accuracy": A.best_accuracy(df),
        "method_audit": A.method_audit(df, target, inputs=inputs),
    }


def success_by_nnz(levels: pd.DataFrame, success: pd.DataFrame) -> pd.DataFrame:
    """The search's levels (:func:`~cubist.report.tables.level_success`) and every method's budgets
    (:func:`~cubist.report.tables.success_rates`) in one table, sorted by nnz, the search first.

    Columns: ``nnz``, ``method``, ``widths``; for the search ``masks`` (tried at that nnz) and
    ``masks_reaching`` (reaching at least once), NaN for a method; ``inits`` and ``runs``; the
    pooled ``successes``, ``rate``, ``low``, ``high`` of a method's budget (every run there; NaN
    for the search, whose masks are not one population); and the best grid point (for the search,
    of the level's best mask): ``best_runs``, ``best_successes``, ``best_rate``, ``best_low``,
    ``best_high``, ``best_lr``, ``best_schedule``.
    """
    cols = ["nnz", "method", "widths", "masks", "masks_reaching", "inits", "runs", "successes", "rate", "low", "high",
            *A.BEST_COLUMNS, "best_lr", "best_schedule", "_o"]
    parts = []
    if len(levels):
        parts.append(pd.DataFrame({
            "nnz": levels["weight_nnz"], "method": A.SEARCH_LABEL, "widths": levels["widths"],
            "masks": levels["masks"], "masks_reaching": levels["masks_reaching"], "inits": levels["inits"],
            "runs": levels["runs"], "successes": np.nan, "rate": np.nan, "low": np.nan, "high": np.nan,
            **{c: levels[c] for c in A.BEST_COLUMNS + ["best_lr", "best_schedule"]}, "_o": 0}))
    if len(success):
        parts.append(pd.DataFrame({
            "nnz": success["level"], "method": success["method"], "widths": success["widths"], "masks": np.nan,
            "masks_reaching": np.nan, "inits": success["inits"], "runs": success["runs"],
            "successes": success["reached_runs"], "rate": success["success_rate"], "low": success["low"],
            "high": success["high"], **{c: success[c] for c in A.BEST_COLUMNS + ["best_lr", "best_schedule"]},
            "_o": 1}))
    if not parts:
        return pd.DataFrame(columns=cols[:-1])
    out = pd.concat(parts, ignore_index=True)[cols]
    out = out.sort_values(["nnz", "_o", "method", "widths"], kind="stable")
    return out.drop(columns="_o").reset_index(drop=True)


def target_reached(df: pd.DataFrame, target: float) -> bool:
    """Whether some run of ``df`` (of any kind) reached ``target``."""
    return bool(A.reached(df, target).any())


def unreached_note(target: float, tried: pd.DataFrame) -> str:
    """The one line saying that no run reached ``target``, with the best run there is
    (``tried``: :func:`~cubist.report.tables.best_accuracy`)."""
    text = (f"no run reached {target:g}: the sparsest search level and each method's best accuracy are "
            f"listed instead")
    live = tried.dropna(subset=["best_acc"]) if len(tried) else tried
    if len(live):
        b = live.sort_values(["best_acc", "best_nnz"], ascending=[False, True], kind="stable").iloc[0]
        text += (f" (best run: {b['best_acc']:.4f}, {b['method']} {A.widths_label(b['widths'])} at "
                 f"{b['best_nnz']:g} nnz, of {int(tried['runs'].sum())} runs)")
    elif len(tried):
        text += f" (all {int(tried['runs'].sum())} runs diverged)"
    return text


# -- formatting ------------------------------------------------------------------------------
def _cell(v) -> str:
    if v is None or v is pd.NA:
        return "—"
    if isinstance(v, tuple):
        return A.widths_label(v) if v else "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "—"
        if float(v).is_integer() and abs(v) < 1e9:
            return str(int(v))
        return f"{v:.4g}" if abs(v) >= 1 else f"{v:.4f}"
    return str(v)


def format_table(df: pd.DataFrame) -> pd.DataFrame:
    """A string copy for printing: widths as ``2-3-3-3-1``, NaN as a dash, short floats."""
    return pd.DataFrame({c: [_cell(v) for v in df[c]] for c in df.columns}, columns=list(df.columns))


def markdown_table(df: pd.DataFrame, empty: str = "none") -> str:
    """``df`` as a Markdown table; ``_(empty)_`` without rows."""
    if df.empty:
        return f"_({empty})_\n"
    t = format_table(df)
    lines = ["| " + " | ".join(t.columns) + " |", "|" + "|".join("---" for _ in t.columns) + "|"]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def html_table(df: pd.DataFrame, empty: str = "none") -> str:
    """``df`` as an HTML table; ``(empty)`` without rows."""
    if df.empty:
        return f"<p><em>({html.escape(empty)})</em></p>\n"
    return format_table(df).to_html(index=False, escape=True, border=0, classes="t") + "\n"


def text_table(df: pd.DataFrame) -> str:
    return format_table(df).to_string(index=False) if len(df) else "(no rows)"


def rate_text(successes, runs, low, high) -> str:
    """``k/n = rate [low, high]``, a success rate with its interval; a dash without runs. Two
    decimals, but two significant digits for a value in (0, 0.005), which two decimals would show
    as 0.00 (3/4500 is ``0.00067 [0.00023, 0.002]``, not ``0.00 [0.00, 0.00]``)."""
    if runs is None or pd.isna(runs) or runs == 0 or pd.isna(successes):
        return "—"
    k, n = int(successes), int(runs)
    return f"{k}/{n} = {_prob(k / n)} [{_prob(low)}, {_prob(high)}]"


def _prob(x) -> str:
    return f"{x:.2g}" if 0 < x < 0.005 else f"{x:.2f}"


def _rate_cells(t: pd.DataFrame, rate: str, runs: str, low: str, high: str) -> list[str]:
    """:func:`rate_text` of every row of ``t``; successes are ``rate * runs`` (exact: rate = k/n)."""
    k = (pd.to_numeric(t[rate], errors="coerce") * pd.to_numeric(t[runs], errors="coerce")).round()
    return [rate_text(*v) for v in zip(k, t[runs], t[low], t[high])]


RATE = "success over inits"          # k/n = rate [95% interval] of a grid point, or pooled
BEST = "best grid point"


def report_view(key: str, tables: dict) -> pd.DataFrame:
    """The columns of table ``key`` as the report shows them: rates as ``k/n = rate [low, high]``."""
    if key in _PARTS:   # a part of another table
        source, keep = _PARTS[key]
        t = tables[source]
        return _VIEWS[source](t[keep(t)].reset_index(drop=True)) if len(t) else t
    t = tables[key]
    if t.empty or key not in _VIEWS:
        return t
    return _VIEWS[key](t)


def _headline_view(t: pd.DataFrame) -> pd.DataFrame:
    v = t[["rank", "method", "widths", "nnz", "effective_nnz", "search_nnz", "ratio"]].copy()
    v[RATE] = _rate_cells(t, "rate", "rate_runs", "low", "high")
    v["inits"] = t["inits"]
    for c in ("rate_nnz", "rate_ratio"):
        if c in t.columns:
            v[c] = t[c]
    for c in ("success_rate", "runs", "best_acc", "status", "run_id"):
        v[c] = t[c]
    return v


def _search_view(t: pd.DataFrame) -> pd.DataFrame:
    v = t[["widths", "search_nnz", "effective_nnz", "masks_reaching", "masks_at_nnz", "masks_tried", "runs", "inits",
           "level_runs"]].copy()
    v[f"{RATE} (best mask)"] = _rate_cells(t, "best_rate", "best_runs", "best_low", "best_high")
    if "rate_nnz" in t.columns:
        v["rate_nnz"] = t["rate_nnz"]
        v["rate_masks"] = t["rate_masks"]
        v[f"{RATE} at rate_nnz"] = _rate_cells(t, "rate", "rate_runs", "rate_low", "rate_high")
        v["rate_run_id"] = t["rate_run_id"]
    v["best_acc"] = t["best_acc"]
    v["run_id"] = t["run_id"]
    return v


def _dense_view(t: pd.DataFrame) -> pd.DataFrame:
    v = t[["widths", "dense_nnz", "runs", "inits", "reached_runs"]].copy()
    v[f"{RATE} (pooled)"] = _rate_cells(t, "rate", "runs", "low", "high")
    v[BEST] = _rate_cells(t, "best_rate", "best_runs", "best_low", "best_high")
    v["best_lr"], v["best_schedule"] = t["best_lr"], t["best_schedule"]
    v["best_acc"], v["minimal"] = t["best_acc"], t["minimal"]
    return v


def _frontier_view(t: pd.DataFrame) -> pd.DataFrame:
    v = t[["widths", "method", "runs", "reached_runs", "min_level", "min_weight_nnz", "min_effective_nnz",
           "level_runs", "inits"]].copy()
    v[f"{RATE} (pooled)"] = _rate_cells(t, "success_rate", "level_runs", "low", "high")
    v[BEST] = _rate_cells(t, "best_rate", "best_runs", "best_low", "best_high")
    v["search_nnz"], v["ratio"] = t["search_nnz"], t["ratio"]
    if "rate_level" in t.columns:
        v["rate_level"] = t["rate_level"]
        v[f"{RATE} at rate_level"] = _rate_cells(t, "rate", "rate_runs", "rate_low", "rate_high")
        v["rate_search_nnz"], v["rate_ratio"] = t["rate_search_nnz"], t["rate_ratio"]
    v["best_acc"], v["run_id"] = t["best_acc"], t["run_id"]
    return v


def _by_nnz_view(t: pd.DataFrame) -> pd.DataFrame:
    v = t[["nnz", "method", "widths", "masks", "masks_reaching", "inits", "runs"]].copy()
    v[f"{RATE} (pooled)"] = _rate_cells(t, "rate", "runs", "low", "high")
    v[BEST] = _rate_cells(t, "best_rate", "best_runs", "best_low", "best_high")
    v["best_lr"], v["best_schedule"] = t["best_lr"], t["best_schedule"]
    return v


def retrain_text(r) -> str:
    """The mask-from-init cell of a :func:`~cubist.report.tables.method_audit` row."""
    if not r["reached_runs"]:
        return "— (never reached)"
    if not r["matched_masks"]:
        n = int(r["reaching_masks"])
        return f"no rows ({n} mask{'s' if n != 1 else ''} reaching)"
    return (rate_text(r["retrain_successes"], r["retrain_runs"], r["retrain_low"], r["retrain_high"])
            + f" ({int(r['matched_masks'])} of {int(r['reaching_masks'])} masks)")


def _method_audit_view(t: pd.DataFrame) -> pd.DataFrame:
    v = t[["widths", "method", "runs", "search_nnz", "nnz", "ratio"]].copy()
    v["reaching at nnz (pooled)"] = [rate_text(*x) for x in zip(t["level_successes"], t["level_runs"],
                                                                t["level_low"], t["level_high"])]
    v["budget at search_nnz"] = t["at_search"]
    v["reaching there (pooled)"] = [rate_text(*x) for x in zip(t["at_successes"], t["at_runs"], t["at_low"],
                                                               t["at_high"])]
    v["runs with inactive"] = t["runs_with_inactive"]
    v["mean inactive"] = t["inactive"]
    v["mean dead units"] = t["dead_units"]
    v["reaching runs with inactive"] = t["reaching_with_inactive"]
    v["mask from init"] = [retrain_text(r) for _, r in t.iterrows()]
    return v


def retrain_notes(table: pd.DataFrame, sources=(), methods=None, max_ids: int = 6) -> list[str]:
    """The lines under the mask-or-weights table: where retrain-from-init rows come from, and the
    command that answers it for the reaching runs of ``methods`` whose masks have none (the sparsest
    reaching runs, at most ``max_ids``)."""
    t = table if methods is None or table.empty else table[table["method"].map(methods).astype(bool)]
    missing = t[t["missing_run_ids"].astype(bool)]
    lines = ["`mask from init`: the search's runs of the same masks (the mask itself or, under random inits, its "
             "orbit's representative), each from its own fresh init, pooled over the search's grid. "
             "Runs of `cubist search retrain --out` (kind search_retrain: a pruned run's own mask from fresh "
             "inits, trained as the search trains masks) count here too, in no search table. A method that reaches "
             "the target far more often than its masks do from fresh inits found weights, not a mask."]
    if len(missing):
        ids = [s.split(",")[0] for s in missing["missing_run_ids"] if s][:max_ids]   # each pair's sparsest
        where = " ".join(os.fspath(s) for s in sources) or "RESULTS"
        pairs = "1 (architecture, method) pair" if len(missing) == 1 else f"{len(missing)} (architecture, method) pairs"
        lines.append(f"No search rows for some masks of {pairs} that reach the "
                     f"target; to train the masks of their sparsest such runs from fresh inits, and audit again "
                     f"with RETRAIN among the stores: `cubist search retrain {where} --run-id "
                     f"{','.join(i[:8] for i in ids)} --seeds 10 --out RETRAIN`.")
    return lines


_VIEWS = {"headline": _headline_view, "search": _search_view, "dense": _dense_view, "frontier": _frontier_view,
          "by_nnz": _by_nnz_view, "method_audit": _method_audit_view}
_PARTS = {"question": ("method_audit", lambda t: t["method"].map(A.is_question_method).astype(bool)),
          "question_others": ("method_audit", lambda t: ~t["method"].map(A.is_question_method).astype(bool))}


# -- figures ---------------------------------------------------------------------------------
def audit_figures(df: pd.DataFrame, tables: dict, target: float, out_dir: str, formats=("png", "svg"),
                  best_runs: bool = True) -> dict[str, list[str]]:
    """Draw the figures of one target into ``out_dir``; returns name -> written files."""
    from . import plots as P
    tag = f"{target:g}".replace(".", "_")
    out = {}
    points = A.accuracy_vs_nnz(df)
    pruned = set(points.loc[points["kind"] == A.PRUNE_KIND, "method"])
    styles = P.method_styles(pruned | set(tables["overparam"]["method"]))  # one style per method, both figures
    if len(points):
        fig = P.new_figure(9, 5.5, 100)
        P.plot_pareto(points, A.search_frontier(df), fig.add_subplot(), target=target, styles=styles,
                      method_fronts=A.pareto_front(points[points["kind"] == A.PRUNE_KIND], by="method"))
        out["pareto"] = P.save_figure(fig, os.path.join(out_dir, f"pareto-{tag}.png"), formats)
    curve = tables["overparam"]
    bound = tables["search"]["search_nnz"].min() if len(tables["search"]) else np.nan
    if len(curve) and (curve["nnz"].notna().any() or not pd.isna(bound)):   # nothing to draw when nobody reached
        fig = P.new_figure(8, 5, 100)
        P.plot_overparam(curve, fig.add_subplot(), search_nnz=bound, styles=styles)
        out["overparam"] = P.save_figure(fig, os.path.join(out_dir, f"overparam-{tag}.png"), formats)
    rows = _best_rows(df, tables["headline"]) if best_runs else []
    if rows:
        fig = P.plot_runs(rows, P.WHAT, panel_inches=3.5)
        out["best"] = P.save_figure(fig, os.path.join(out_dir, f"best-{tag}.png"), formats)
    return out


def _best_rows(df: pd.DataFrame, head: pd.DataFrame) -> list:
    """The sparsest run of the search and of each method (one per method), that kept weights."""
    by_id = df.drop_duplicates("run_id").set_index("run_id", drop=False)
    rows, seen = [], set()
    for _, h in head[head["status"] == "ok"].iterrows():
        if h["method"] in seen or h["run_id"] not in by_id.index:
            continue
        r = by_id.loc[h["run_id"]]
        if r["weights"] is None or r["mask_bits"] is None:
            continue
        seen.add(h["method"])
        rows.append(r)
        if len(rows) == BEST_RUNS_MAX:
            break
    return rows


# -- the report ------------------------------------------------------------------------------
SECTIONS = [
    ("headline", "Headline",
     "Fewest nonzero weights reaching the target: the search's exact sparsest masks and each method's "
     "sparsest run (best over hyper-parameters and seeds). `ratio` = method nnz / search bound of an "
     "architecture embedding in the pruned one. `success over inits` at that nnz: the best grid point of "
     "the level's best mask (search) or of the method's budget, `k/n = rate [95% Wilson interval]` over its "
     "`n` runs, `inits` = K runs per grid point. `rate_nnz`: fewest nnz at which that rate is at least "
     "`--min-rate`, `rate_ratio` against the search's. `success_rate`: for the search the fraction of masks "
     "at its nnz reaching the target at least once, for a method the fraction of all its runs at that budget. "
     f"`{A.NEVER}`: the method has runs but none reached the target; `{A.NO_RUNS}`: no rows."),
    ("search", "The search (phase 2: masks)",
     "Per searched architecture: fewest nnz at which some run reached the target, distinct masks reaching "
     "it at that nnz and tried at that nnz, `level_runs` runs at that nnz (K = `inits` per mask and grid "
     "point), the success over inits of the level's best mask at its best grid point; `rate_nnz`: the "
     "fewest nnz with a mask reaching the target in at least `--min-rate` of its runs at one grid point "
     "(`rate_masks` such masks there). Diverged runs never count."),
    ("by_nnz", "Success over inits per nnz",
     "Every nnz level of the search (its best mask: `masks` tried, `masks_reaching` reaching at least once) "
     "and every budget of each method, side by side. `pooled`: all runs of the method at the budget (over "
     "hyper-parameters and inits); `best grid point`: the grid point (lr, schedule; a method's "
     "hyper-parameters) with the most successes, for the search that of the level's best mask."),
    ("dense", "The search (phase 1: dense architectures)",
     "Success over inits per architecture, pooled over the grid and at its best grid point. "
     "`minimal`: no reaching architecture inside it."),
    ("frontier", "Methods",
     "Per architecture and method; NaN when the target was never reached. `level_runs`: runs at "
     "`min_level`; `rate_level`: fewest budget whose best grid point reaches the target in at least "
     "`--min-rate` of its runs, `rate_ratio` against the search's `rate_nnz`."),
    ("effective", "Nominal against effective sparsity",
     "`inactive`: nonzero weights on no input-to-output path (§5); means over runs."),
    ("overparam", "Over-parameterisation", "Fewest nnz reaching the target against the starting width."),
    ("question", "Do PILoT, DWF and LRR elude the sparsest models?",
     "Per architecture and method (PILoT, DWF, LRR and their combinations): `search_nnz`, the search's "
     "sparsest nnz reaching the target in an architecture embedding in this one; `nnz`, the method's fewest, "
     "`ratio` = nnz / search_nnz; `reaching at nnz`: every run at that budget (pooled over lr, schedule, "
     "hyper-parameters and inits, `k/n = rate [95% Wilson interval]`); `reaching there`: the same at the "
     "smallest budget tried at or above `search_nnz`; `runs with inactive`: share of all its runs with "
     "nonzero weights on no input-to-output path (weight nnz > effective nnz, §5), `mean inactive` such "
     "weights per run, `reaching runs with inactive` the share among the runs reaching the target; `mask "
     "from init`: does the mask alone train to the target (a mask), or only with the weights the method "
     "left (weights)?"),
    ("question_others", "The same for every other method", "Columns as above."),
    ("overlap_summary", "Overlap with the sparsest masks",
     "Shared nonzero weights with the search's sparsest masks, maximised over joint permutations of the "
     "hidden units, after keeping only each run's effective weights (`exact`: exhaustive; otherwise a "
     "lower bound). `same_orbit_runs`: runs whose effective mask *is* a sparsest mask up to symmetry."),
]
UNREACHED_TITLE = "What was tried (no run reached the target)"
UNREACHED_NOTE = ("Per searched architecture, dense architecture (phase 1) and (architecture, method): the runs, "
                  "`levels` nnz levels tried (the search's mask sizes, a method's budgets) from `fewest_nnz` to "
                  "`most_nnz`, the best train accuracy of a non-diverged run (`best_acc`, at `best_nnz` weights; "
                  "`run_id`) and the best at the sparsest level tried (`best_at_fewest`).")
FIGURE_TITLES = {"pareto": "Accuracy against nonzero weights", "overparam": "Over-parameterisation curve",
                 "best": "Sparsest runs: decision regions, network, first-layer switching lines"}


def _k_range(values) -> str:
    v = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    if v.empty:
        return "—"
    lo, hi = int(v.min()), int(v.max())
    return f"{lo}" if lo == hi else f"{lo} to {hi}"


def _grid_points(rows: pd.DataFrame, grid) -> int:
    return int(rows.groupby(list(grid), dropna=False).ngroups) if len(rows) else 0


def target_notes(df: pd.DataFrame, tables: dict, target: float, min_rate: float) -> list[str]:
    """What stands behind the numbers of one target (runs, inits K, grid points), and what was not reached."""
    notes = ["Every rate is `k/n = rate [low, high]`: `k` of `n` runs reached the target, with the 95% Wilson "
             "interval; `inits` is K, the fewest runs (independent random inits) at one grid point. A best grid "
             "point (and the search's best mask) is a maximum over many, so its rate is optimistic; pooled "
             "rates count every run."]
    search, levels = tables["search"], tables["levels"]
    srows = df[df["kind"] == A.SEARCH_KIND]
    if len(srows):
        notes.append(f"The search (phase 2): {len(srows)} runs of {int(levels['masks'].sum())} masks on "
                     f"{_grid_points(srows, A.SEARCH_GRID)} grid points (lr x schedule), K = "
                     f"{_k_range(levels['inits'])} inits per mask and grid point (fewest per nnz level).")
        for _, r in search.iterrows():
            w = A.widths_label(r["widths"])
            if pd.isna(r["search_nnz"]):
                notes.append(f"The search of {w} did not reach {target:g}: none of its {r['runs']} runs "
                             f"(K = {r['inits']}) reached it.")
                continue
            best = rate_text(round(r["best_rate"] * r["best_runs"]), r["best_runs"], r["best_low"], r["best_high"])
            text = (f"The search of {w}: some run reached {target:g} at {r['search_nnz']:g} nnz; its best mask "
                    f"there: {best} ({r['level_runs']} runs at that nnz).")
            if pd.isna(r.get("rate_nnz", np.nan)):
                text += f" No mask reached it in at least {min_rate:g} of its runs at one grid point."
            else:
                at = rate_text(round(r["rate"] * r["rate_runs"]), r["rate_runs"], r["rate_low"], r["rate_high"])
                text += f" At least {min_rate:g}: {r['rate_nnz']:g} nnz ({at})."
            notes.append(text)
    else:
        notes.append("No search rows (phase 2): no search bound.")
    drows = df[df["kind"] == A.DENSE_KIND]
    if len(drows):
        dense = tables["dense"]
        notes.append(f"Phase 1: {len(drows)} runs of {len(dense)} dense architectures on "
                     f"{_grid_points(drows, A.SEARCH_GRID)} grid points, K = {_k_range(dense['inits'])} inits "
                     f"per architecture and grid point; {int((dense['reached_runs'] > 0).sum())} reached {target:g}.")
    prows = df[df["kind"] == A.PRUNE_KIND]
    if len(prows):
        front = tables["frontier"]
        never = sorted(f"{m} ({A.widths_label(w)})" for m, w, k in zip(front["method"], front["widths"],
                                                                    front["reached_runs"]) if k == 0)
        if len(never) > NEVER_LISTED:
            never = [f"{len(never)} (method, architecture) pairs, see Methods"]
        notes.append(f"The pruners: {len(prows)} runs, K = {_k_range(tables['success']['inits'])} inits per "
                     f"budget and grid point (lr x schedule x hyper-parameters)."
                     + (f" Never reached {target:g}: {', '.join(never)}." if never else ""))
    ks = [pd.to_numeric(tables[k]["inits"], errors="coerce") for k in ("levels", "success")]
    if any((k == 1).any() for k in ks):
        notes.append("Where K = 1 a grid point's rate is 0 or 1 and its interval is wide ([0.21, 1] for 1/1): "
                     "`rate_nnz` then says no more than the fewest nnz reached. Rerun with more seeds (--seeds K) "
                     "for rates.")
    return notes


def _provenance(df: pd.DataFrame, sources) -> list[tuple[str, str]]:
    counts = df.groupby(["kind", "method"], dropna=False).size()
    return [
        ("result stores", ", ".join(os.fspath(s) for s in sources)),
        ("runs", f"{len(df)} (" + ", ".join(f"{k}/{m}: {n}" for (k, m), n in counts.items()) + ")"),
        ("data sets", ", ".join(sorted(str(d) for d in df["dataset_id"].dropna().unique())) or "—"),
        ("engines", ", ".join(sorted(str(e) for e in df["engine"].dropna().unique())) or "—"),
        ("written", f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by cubist-audit {__version__}"),
    ]


class TargetReport(NamedTuple):
    """One target's part of the report: its tables, figures (name -> files), notes, whether
    some run reached it, and lines under a section's table (section key -> lines)."""
    tables: dict
    figures: dict
    notes: list
    reached: bool = True
    after: dict = {}


def _banner(target: float, part: TargetReport) -> str | None:
    """The note at the top of the section of a target no run reached (None when one did)."""
    if part.reached:
        return None
    note = unreached_note(target, part.tables["best_accuracy"])
    return (f"**{note[0].upper() + note[1:]}.** Tables that need a reaching run show `{A.NEVER}` or are empty; "
            f"figures that need one are not drawn.")


NEEDS_REACHING_RUN = {"overlap_summary"}   # tables whose rows are reaching runs: empty when nobody reached


def _empty_text(key: str, target: float, part: TargetReport) -> str:
    return f"none: no run reached {target:g}" if key in NEEDS_REACHING_RUN and not part.reached else "none"


def render_markdown(provenance, per_target: dict) -> str:
    md = ["# Cubist Spiral audit: pruning against the exact sparsest models", "",
          "Zhang & Papyan, *Sparsest Models Elude Pruning* (ICML 2024). Accuracy is train accuracy "
          "(`logit > 0`); nnz counts nonzero weights (biases apart).", ""]
    md += [f"- **{k}**: {v}" for k, v in provenance] + [""]
    for target, part in per_target.items():
        part = TargetReport(*part)
        md += [f"## Target {target:g}", ""]
        banner = _banner(target, part)
        if banner:
            md += [banner, "", f"### {UNREACHED_TITLE}", "", UNREACHED_NOTE, "",
                   markdown_table(part.tables["best_accuracy"])]
        md += [f"- {n}" for n in part.notes] + [""]
        for key, title, note in SECTIONS:
            md += [f"### {title}", "", note, "",
                   markdown_table(report_view(key, part.tables), _empty_text(key, target, part))]
            md += [line for n in part.after.get(key, ()) for line in (n, "")]
        for name, paths in part.figures.items():
            png = [p for p in paths if p.endswith(".png")] or paths
            links = " ".join(f"[{os.path.splitext(p)[1][1:]}]({os.path.basename(p)})" for p in paths)
            md += [f"### {FIGURE_TITLES[name]}", "", f"![{name}]({os.path.basename(png[0])})", "", links, ""]
    return "\n".join(md)


def _inline_html(text: str) -> str:
    """Escape ``text`` and turn its Markdown code spans and emphasis into HTML."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)


def render_html(provenance, per_target: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Cubist audit</title><style>",
             "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table.t{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em}"
             "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "img{max-width:100%;border:1px solid #eee}.note{color:#555}"
             ".unreached{border-left:4px solid #c60;padding:0.3em 0.8em;background:#fff4e5}",
             "</style></head><body>",
             "<h1>Cubist Spiral audit: pruning against the exact sparsest models</h1>",
             "<p>Zhang &amp; Papyan, <em>Sparsest Models Elude Pruning</em> (ICML 2024). Accuracy is train "
             "accuracy (<code>logit &gt; 0</code>); nnz counts nonzero weights (biases apart).</p><ul>"]
    parts += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in provenance] + ["</ul>"]
    for target, part in per_target.items():
        part = TargetReport(*part)
        parts.append(f"<h2>Target {target:g}</h2>")
        banner = _banner(target, part)
        if banner:
            parts += [f"<p class='unreached'>{_inline_html(banner)}</p>", f"<h3>{e(UNREACHED_TITLE)}</h3>",
                      f"<p class='note'>{_inline_html(UNREACHED_NOTE)}</p>", html_table(part.tables["best_accuracy"])]
        parts += ["<ul>"] + [f"<li>{_inline_html(n)}</li>" for n in part.notes] + ["</ul>"]
        for key, title, note in SECTIONS:
            parts += [f"<h3>{e(title)}</h3>", f"<p class='note'>{_inline_html(note)}</p>",
                      html_table(report_view(key, part.tables), _empty_text(key, target, part))]
            parts += [f"<p class='note'>{_inline_html(n)}</p>" for n in part.after.get(key, ())]
        for name, paths in part.figures.items():
            png = [p for p in paths if p.endswith(".png")] or paths
            links = " ".join(f"<a href='{e(os.path.basename(p))}'>{e(os.path.splitext(p)[1][1:])}</a>"
                             for p in paths)
            parts += [f"<h3>{e(FIGURE_TITLES[name])}</h3>",
                      f"<p><img src='{e(os.path.basename(png[0]))}' alt='{e(name)}'></p><p>{links}</p>"]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(df: pd.DataFrame, targets, out_dir: str, methods=None, sources=(), figures: bool = True,
                 formats=("png", "svg"), min_rate: float = DEFAULT_MIN_RATE) -> dict:
    """Tables, figures, ``report.md`` and ``report.html`` for each target into ``out_dir``.

    ``min_rate``: the success rate over inits (at a best grid point) above which a mask or a
    budget counts as reliably reaching a target (``rate_nnz``, ``rate_level``).

    Every target gets its section, also one that no run reached: that section says so at the top
    and lists what was tried (:func:`~cubist.report.tables.best_accuracy`).

    Returns ``{"tables": {target: {...}}, "files": [...], "unreached": [target, ...]}`` (the
    targets no run reached, in the order given).
    """
    df = A.normalised(df)
    targets = [float(t) for t in targets]
    groups = A.by_dataset(df)
    if len(groups) > 1:
        return _report_per_dataset(groups, targets, out_dir, methods, sources, figures, formats, min_rate)
    os.makedirs(out_dir, exist_ok=True)
    per_target, files = {}, []
    for t in targets:
        tables = audit_tables(df, t, methods, min_rate)
        ok = target_reached(df, t)
        figs = audit_figures(df, tables, t, out_dir, formats) if figures else {}
        notes = target_notes(df, tables, t, min_rate)
        if figures and "overparam" not in figs and len(tables["overparam"]):
            notes.append(f"The over-parameterisation curve is not drawn: no pruned run and no search reached {t:g}.")
        after = {"question": retrain_notes(tables["method_audit"], sources, A.is_question_method),
                 "question_others": retrain_notes(tables["method_audit"], sources,
                                                  lambda m: not A.is_question_method(m))[1:]}
        per_target[t] = TargetReport(tables, figs, notes, ok, after)
        files += [p for paths in figs.values() for p in paths]
    prov = _provenance(df, sources)
    for name, text in (("report.md", render_markdown(prov, per_target)),
                       ("report.html", render_html(prov, per_target))):
        path = os.path.join(out_dir, name)
        _write_text(path, text)
        files.append(path)
    return {"tables": {t: part.tables for t, part in per_target.items()}, "files": files,
            "unreached": [t for t, part in per_target.items() if not part.reached]}


def _report_per_dataset(groups: dict, targets, out_dir, methods, sources, figures, formats, min_rate) -> dict:
    """One report per data set, each in its own folder of ``out_dir``, and an index linking them;
    the tables and the unreached targets are keyed ``(data set label, target)``."""
    os.makedirs(out_dir, exist_ok=True)
    out, index = {"tables": {}, "files": [], "unreached": []}, []
    for label, part in groups.items():
        folder = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")
        sub = write_report(part, targets, os.path.join(out_dir, folder), methods, sources, figures, formats, min_rate)
        out["tables"].update({(label, t): tab for t, tab in sub["tables"].items()})
        out["files"] += sub["files"]
        out["unreached"] += [(label, t) for t in sub["unreached"]]
        missed = ", ".join(f"{t:g}" for t in sub["unreached"])
        index.append((label, folder, len(part), f"; no run reached {missed}" if missed else ""))
    md = ["# Cubist audit: one report per data set", "",
          "The tables never pool data sets: each data set has its own report.", ""]
    md += [f"- [{label}]({folder}/report.md): {n} runs{miss}" for label, folder, n, miss in index]
    body = "".join(f'<li><a href="{folder}/report.html">{html.escape(label)}</a>: {n} runs{html.escape(miss)}</li>'
                   for label, folder, n, miss in index)
    pages = {"report.md": "\n".join(md) + "\n",
             "report.html": f"<!doctype html><meta charset='utf-8'><title>Cubist audit</title>"
                            f"<h1>Cubist audit: one report per data set</h1><ul>{body}</ul>"}
    for name, text in pages.items():
        path = os.path.join(out_dir, name)
        _write_text(path, text)
        out["files"].append(path)
    return out


def _write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    write_atomically(path, write)


def run_audit(results, targets=(DEFAULT_TARGET,), out_dir: str = DEFAULT_OUT, methods=None, figures: bool = True,
              formats=("png", "svg"), min_rate: float = DEFAULT_MIN_RATE) -> dict:
    """Load result stores and write the report (see :func:`write_report`)."""
    results = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    df = A.load_results(results)
    return write_report(df, targets, out_dir, methods=methods, sources=results, figures=figures,
                        formats=formats, min_rate=min_rate)
