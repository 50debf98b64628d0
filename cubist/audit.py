"""``cubist audit``: the report comparing pruning with the exact sparsest models.

Reads result stores, computes the tables of :mod:`cubist.analysis` for each target accuracy
(the paper's 95% and 99.5%; Zhang & Papyan, "Sparsest Models Elude Pruning", ICML 2024),
draws the Pareto plot, the over-parameterisation curve and the sparsest runs
(:mod:`cubist.plots`), and writes ``report.md`` and ``report.html`` (figures linked, PNG and
SVG side by side) into the output directory; the headline table is printed.

:func:`audit_tables`, :func:`write_report` and :func:`run_audit` are the library entry
points; :func:`run_quick_audit` is the small end-to-end audit behind ``--quick``.
"""
from __future__ import annotations

import html
import math
import os
import re
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from . import __version__
from . import analysis as A

DEFAULT_OUT = "audit"
BEST_RUNS_MAX = 6          # runs drawn side by side in the best-runs figure


# -- tables ----------------------------------------------------------------------------------
def audit_tables(df: pd.DataFrame, target: float, methods=None) -> dict[str, pd.DataFrame]:
    """Every table of the report for one target, by name (all pure functions of ``df``)."""
    overlap = A.mask_overlap(df, target)
    prune = df[df["kind"] == A.PRUNE_KIND]
    return {
        "headline": A.headline(df, target, methods),
        "search": A.sparsest_search(df, target),
        "dense": A.smallest_dense(df, target),
        "frontier": A.method_frontier(df, target),
        "success": A.success_rates(df, target),
        "effective": A.effective_sparsity(prune),
        "overparam": A.overparam_curve(df, target),
        "overlap": overlap,
        "overlap_summary": A.overlap_summary(overlap),
    }


def check_reached(df: pd.DataFrame, target: float) -> None:
    """Raise :class:`~cubist.analysis.ResultsError` when no run reached ``target``."""
    ok = A.reached(df, target)
    if not ok.any():
        live = df.loc[~df["diverged"].astype(bool), "train_acc"]
        best = f"; the best run has {live.max():.4f}" if live.notna().any() else ""
        raise A.ResultsError(f"no run reached train accuracy {target}{best}")


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


def markdown_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    t = format_table(df)
    lines = ["| " + " | ".join(t.columns) + " |", "|" + "|".join("---" for _ in t.columns) + "|"]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def html_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><em>(none)</em></p>\n"
    return format_table(df).to_html(index=False, escape=True, border=0, classes="t") + "\n"


def text_table(df: pd.DataFrame) -> str:
    return format_table(df).to_string(index=False) if len(df) else "(no rows)"


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
    if len(curve):
        fig = P.new_figure(8, 5, 100)
        bound = tables["search"]["search_nnz"].min() if len(tables["search"]) else np.nan
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
     "architecture embedding in the pruned one; `success_rate` = fraction of runs at that budget reaching "
     f"the target. `{A.NEVER}`: the method has runs but none reached the target; `{A.NO_RUNS}`: no rows."),
    ("search", "The search (phase 2: masks)",
     "Per searched architecture: fewest nnz reaching the target, distinct masks reaching it at that nnz "
     "and tried at that nnz. Diverged runs never count."),
    ("dense", "The search (phase 1: dense architectures)", "`minimal`: no reaching architecture inside it."),
    ("frontier", "Methods", "Per architecture and method; NaN when the target was never reached."),
    ("success", "Success rate per budget", "Fraction of runs at each budget reaching the target."),
    ("effective", "Nominal against effective sparsity",
     "`inactive`: nonzero weights on no input-to-output path (§5); means over runs."),
    ("overparam", "Over-parameterisation", "Fewest nnz reaching the target against the starting width."),
    ("overlap_summary", "Overlap with the sparsest masks",
     "Shared nonzero weights with the search's sparsest masks, maximised over joint permutations of the "
     "hidden units, after keeping only each run's effective weights (`exact`: exhaustive; otherwise a "
     "lower bound). `same_orbit_runs`: runs whose effective mask *is* a sparsest mask up to symmetry."),
]
FIGURE_TITLES = {"pareto": "Accuracy against nonzero weights", "overparam": "Over-parameterisation curve",
                 "best": "Sparsest runs: decision regions, network, first-layer switching lines"}


def _provenance(df: pd.DataFrame, sources) -> list[tuple[str, str]]:
    counts = df.groupby(["kind", "method"], dropna=False).size()
    return [
        ("result stores", ", ".join(os.fspath(s) for s in sources)),
        ("runs", f"{len(df)} (" + ", ".join(f"{k}/{m}: {n}" for (k, m), n in counts.items()) + ")"),
        ("data sets", ", ".join(sorted(str(d) for d in df["dataset_id"].dropna().unique())) or "—"),
        ("engines", ", ".join(sorted(str(e) for e in df["engine"].dropna().unique())) or "—"),
        ("written", f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by cubist-audit {__version__}"),
    ]


def render_markdown(provenance, per_target: dict) -> str:
    md = ["# Cubist Spiral audit: pruning against the exact sparsest models", "",
          "Zhang & Papyan, *Sparsest Models Elude Pruning* (ICML 2024). Accuracy is train accuracy "
          "(`logit > 0`); nnz counts nonzero weights (biases apart).", ""]
    md += [f"- **{k}**: {v}" for k, v in provenance] + [""]
    for target, (tables, figures) in per_target.items():
        md += [f"## Target {target:g}", ""]
        for key, title, note in SECTIONS:
            md += [f"### {title}", "", note, "", markdown_table(tables[key])]
        for name, paths in figures.items():
            png = [p for p in paths if p.endswith(".png")] or paths
            links = " ".join(f"[{os.path.splitext(p)[1][1:]}]({os.path.basename(p)})" for p in paths)
            md += [f"### {FIGURE_TITLES[name]}", "", f"![{name}]({os.path.basename(png[0])})", "", links, ""]
    return "\n".join(md)


def _inline_html(text: str) -> str:
    """Escape ``text`` and turn its Markdown code spans and emphasis into HTML."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)


def render_html(provenance, per_target: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Cubist audit</title><style>",
             "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table.t{border-collapse:collapse;font-size:0.85em;margin:0.5em 0 1.5em}"
             "table.t td,table.t th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "img{max-width:100%;border:1px solid #eee}.note{color:#555}",
             "</style></head><body>",
             "<h1>Cubist Spiral audit: pruning against the exact sparsest models</h1>",
             "<p>Zhang &amp; Papyan, <em>Sparsest Models Elude Pruning</em> (ICML 2024). Accuracy is train "
             "accuracy (<code>logit &gt; 0</code>); nnz counts nonzero weights (biases apart).</p><ul>"]
    parts += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in provenance] + ["</ul>"]
    for target, (tables, figures) in per_target.items():
        parts.append(f"<h2>Target {target:g}</h2>")
        for key, title, note in SECTIONS:
            parts += [f"<h3>{e(title)}</h3>", f"<p class='note'>{_inline_html(note)}</p>", html_table(tables[key])]
        for name, paths in figures.items():
            png = [p for p in paths if p.endswith(".png")] or paths
            links = " ".join(f"<a href='{e(os.path.basename(p))}'>{e(os.path.splitext(p)[1][1:])}</a>"
                             for p in paths)
            parts += [f"<h3>{e(FIGURE_TITLES[name])}</h3>",
                      f"<p><img src='{e(os.path.basename(png[0]))}' alt='{e(name)}'></p><p>{links}</p>"]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(df: pd.DataFrame, targets, out_dir: str, methods=None, sources=(), figures: bool = True,
                 formats=("png", "svg")) -> dict:
    """Tables, figures, ``report.md`` and ``report.html`` for each target into ``out_dir``.

    Returns ``{"tables": {target: {...}}, "files": [...]}``. Raises
    :class:`~cubist.analysis.ResultsError` when no run reached one of the targets.
    """
    df = A._normalise(df)
    targets = [float(t) for t in targets]
    for t in targets:
        check_reached(df, t)
    os.makedirs(out_dir, exist_ok=True)
    per_target, files = {}, []
    for t in targets:
        tables = audit_tables(df, t, methods)
        figs = audit_figures(df, tables, t, out_dir, formats) if figures else {}
        per_target[t] = (tables, figs)
        files += [p for paths in figs.values() for p in paths]
    prov = _provenance(df, sources)
    for name, text in (("report.md", render_markdown(prov, per_target)),
                       ("report.html", render_html(prov, per_target))):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        files.append(path)
    return {"tables": {t: tab for t, (tab, _) in per_target.items()}, "files": files}


def run_audit(results, targets=(0.95,), out_dir: str = DEFAULT_OUT, methods=None, figures: bool = True,
              formats=("png", "svg")) -> dict:
    """Load result stores and write the report (see :func:`write_report`)."""
    results = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    df = A.load_results(results)
    return write_report(df, targets, out_dir, methods=methods, sources=results, figures=figures,
                        formats=formats)


# -- --quick ---------------------------------------------------------------------------------
QUICK_METHODS = ("gmp", "snip", "synflow", "random")   # one training run each: cheap
# (4,2,5) is the architecture with the fewest weights that phase 1 found reaching 95% (results/),
# and its phase-2 search reaches 95% at 27 weights with lr 0.05 and cosine annealing.
QUICK_HIDDEN = (4, 2, 5)
QUICK_WIDTHS = ((2, 4, 2, 5, 1), (2, 16, 16, 16, 1))
QUICK_NNZ = (20, 27, 40, 65)


def quick_sweeps(*, methods=QUICK_METHODS, widths=QUICK_WIDTHS, nnz=QUICK_NNZ, lrs=(0.05,),
                 schedules=("cosine",), seeds: int = 1, epochs: int = 50, device: str = "auto") -> list:
    """The pruner sweeps of the quick audit (``pruners.runner.SweepConfig``), budgets that fit."""
    from pruners.runner import SweepConfig
    out = []
    for w in widths:
        budgets = tuple(f for f in nnz if f <= A.dense_weights(w))
        for m in methods:
            if budgets:
                out.append(SweepConfig(method=m, widths=tuple(w), nnz=budgets, lrs=tuple(lrs),
                                       schedules=tuple(schedules), seeds=seeds, epochs=epochs, device=device))
    return out


def run_quick_audit(out_dir: str = DEFAULT_OUT, *, epochs: int = 50, target: float = 0.95,
                    hidden=QUICK_HIDDEN, max_nnz: int | None = None, methods=QUICK_METHODS, widths=QUICK_WIDTHS,
                    nnz=QUICK_NNZ, lrs=(0.05,), schedules=("cosine",), seeds: int = 1, device: str = "auto",
                    jobs: int = 1, quiet: bool = True, figures: bool = True, log=print) -> dict:
    """A small end-to-end audit into ``out_dir`` (results in ``out_dir/runs``, resumable).

    1. the search's phase 2 for ``hidden`` over the mask orbits, sparsest level first, until a
       level reaches ``target`` (or every level up to ``max_nnz``) (``search.phases.search_masks``)
       on the grid ``lrs x schedules x seeds``;
    2. each pruner of ``methods`` at each of ``widths`` and budgets ``nnz`` (``pruners.run_sweep``);
    3. :func:`run_audit` on the result store.

    Fewer ``epochs`` than the paper's 50 make every number an upper bound on what 50 give.
    """
    import pruners
    from search import phases
    from .store import ResultStore
    store = ResultStore(os.path.join(out_dir, "runs"))
    grid = phases.Grid(lrs=tuple(lrs), schedules=tuple(schedules), seeds=seeds, epochs=epochs)
    log(f"quick audit: search {tuple(hidden)} up to {max_nnz} weights, {epochs} epochs")
    phases.search_masks(tuple(hidden), target, grid, store=store, max_nnz=max_nnz, jobs=jobs, quiet=quiet,
                        log=log if not quiet else (lambda *a, **k: None))
    for cfg in quick_sweeps(methods=methods, widths=widths, nnz=nnz, lrs=lrs, schedules=schedules, seeds=seeds,
                            epochs=epochs, device=device):
        log(f"quick audit: prune {cfg.method} {A.widths_label(cfg.widths)} at {cfg.nnz}")
        pruners.run_sweep(cfg, store=store, progress=not quiet, threads=jobs)
    return run_audit([store.path], [target], out_dir, methods=list(methods), figures=figures)


# -- cubist audit ----------------------------------------------------------------------------
def add_parser(sub):
    from .cli import command_help, csv, positive_int
    p = sub.add_parser("audit", help=command_help("audit"),
                       description="Read result stores, write report.md and report.html with figures, "
                                   "print the headline table.")
    p.add_argument("results", nargs="*", metavar="RESULTS", help="result store directories")
    p.add_argument("--target", type=csv(float), default=[0.95], metavar="ACC[,ACC...]",
                   help="train accuracy targets (default 0.95)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"report directory (default {DEFAULT_OUT})")
    p.add_argument("--methods", type=csv(), metavar="M[,M...]",
                   help="methods expected in the headline (missing ones are listed as 'no runs')")
    p.add_argument("--formats", type=csv(str, choices=("png", "svg")), default=["png", "svg"],
                   help="figure formats (default png,svg)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--quick", action="store_true",
                   help="run a small search and pruner sweep first (into DIR/runs), then audit it")
    p.add_argument("--epochs", type=positive_int, default=50, help="epochs per run for --quick (default 50)")
    p.add_argument("--quiet", action="store_true", help="--quick: no progress bars")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="--quick: where torch runs")
    p.add_argument("--jobs", type=positive_int, default=1, help="--quick: parallel workers / threads (default 1)")
    p.set_defaults(func=_run)


def _run(args):
    from .cli import CubistError
    for t in args.target:
        if not 0 < t <= 1:
            raise CubistError(f"--target {t} is not an accuracy in (0, 1]")
    if args.quick:
        if args.results:
            raise CubistError("--quick writes its own results; give no RESULTS")
        if len(args.target) > 1:
            raise CubistError("--quick audits one --target")
        report = run_quick_audit(args.out, epochs=args.epochs, target=args.target[0], device=args.device,
                                 jobs=args.jobs, figures=not args.no_figures, quiet=args.quiet, log=print)
    else:
        if not args.results:
            raise CubistError("give at least one RESULTS directory (or --quick)")
        report = run_audit(args.results, args.target, args.out, methods=args.methods,
                           figures=not args.no_figures, formats=args.formats)
    for t, tables in report["tables"].items():
        print(f"Target {t:g}: fewest nonzero weights reaching it")
        cols = ["rank", "method", "widths", "nnz", "effective_nnz", "ratio", "success_rate", "runs", "status"]
        print(text_table(tables["headline"][cols]))
        print()
    print(f"wrote {os.path.join(args.out, 'report.md')} and {os.path.join(args.out, 'report.html')}")
    return 0
