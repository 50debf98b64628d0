"""``cubist audit``: the report of result stores, and ``--quick``, a small end-to-end audit (a search,
a few pruner sweeps, then the report) that the README's first command runs."""
from __future__ import annotations

import os

from cubist.masks import dense_weight_count
from cubist.stats import DEFAULT_TARGET
from cubist.train import TrainConfig
from cubist.report import tables as A
from cubist.report.audit import (DEFAULT_MIN_RATE, DEFAULT_OUT, RATE, report_view, run_audit, text_table,
                                 unreached_note)

from .common import CubistError, add_target, command_help, csv, default_of, positive_int


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
        budgets = tuple(f for f in nnz if f <= dense_weight_count(w))
        for m in methods:
            if budgets:
                out.append(SweepConfig(method=m, widths=tuple(w), nnz=budgets, lrs=tuple(lrs),
                                       schedules=tuple(schedules), seeds=seeds, epochs=epochs, device=device))
    return out


def run_quick_audit(out_dir: str = DEFAULT_OUT, *, epochs: int = TrainConfig.epochs, target: float = DEFAULT_TARGET,
                    hidden=QUICK_HIDDEN, max_nnz: int | None = None, methods=QUICK_METHODS, widths=QUICK_WIDTHS,
                    nnz=QUICK_NNZ, lrs=(0.05,), schedules=("cosine",), seeds: int = 1, device: str = "auto",
                    jobs: int = 1, quiet: bool = True, figures: bool = True, min_rate: float = DEFAULT_MIN_RATE,
                    log=print) -> dict:
    """A small end-to-end audit into ``out_dir`` (results in ``out_dir/runs``, resumable).

    1. the search's phase 2 for ``hidden`` over the mask orbits, sparsest level first, until a
       level reaches ``target`` (or every level up to ``max_nnz``) (``search.phases.search_masks``)
       on the grid ``lrs x schedules x seeds``;
    2. each pruner of ``methods`` at each of ``widths`` and budgets ``nnz`` (``pruners.run_sweep``);
    3. :func:`run_audit` on the result store (a report also when no run reached ``target``: it
       says so, and the runs stay in ``out_dir/runs``).

    Fewer ``epochs`` than the paper's 50 make every number an upper bound on what 50 give.
    """
    import pruners
    from search import phases
    from cubist.store import ResultStore
    store = ResultStore(os.path.join(out_dir, "runs"))
    grid = phases.Grid(lrs=tuple(lrs), schedules=tuple(schedules), seeds=seeds, epochs=epochs)
    upto = f"up to {max_nnz} weights" if max_nnz is not None else f"sparsest level first until one reaches {target:g}"
    log(f"quick audit: search {tuple(hidden)} {upto}, {epochs} epochs")
    phases.search_masks(tuple(hidden), target, grid, store=store, max_nnz=max_nnz, jobs=jobs, quiet=quiet,
                        log=log if not quiet else (lambda *a, **k: None))
    for cfg in quick_sweeps(methods=methods, widths=widths, nnz=nnz, lrs=lrs, schedules=schedules, seeds=seeds,
                            epochs=epochs, device=device):
        log(f"quick audit: prune {cfg.method} {A.widths_label(cfg.widths)} at {cfg.nnz}")
        pruners.run_sweep(cfg, store=store, progress=not quiet, threads=jobs)
    return run_audit([store.path], [target], out_dir, methods=list(methods), figures=figures, min_rate=min_rate)


# -- cubist audit ----------------------------------------------------------------------------
def add_parser(sub):
    p = sub.add_parser("audit", help=command_help("audit"),
                       description="Read result stores, write report.md and report.html with figures, "
                                   "print the headline table.")
    p.add_argument("results", nargs="*", metavar="RESULTS", help="result store directories")
    add_target(p, many=True, text="train accuracy targets")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"report directory (default {DEFAULT_OUT})")
    p.add_argument("--methods", type=csv(), metavar="M[,M...]",
                   help="methods expected in the headline (missing ones are listed as 'no runs')")
    formats = default_of(run_audit, "formats")
    p.add_argument("--formats", type=csv(str, choices=formats), default=list(formats),
                   help="figure formats (default png,svg)")
    p.add_argument("--min-rate", type=float, default=DEFAULT_MIN_RATE, metavar="Q",
                   help="a mask or pruning budget reaches the target reliably when its best grid point "
                        "reaches it in at least this fraction of its inits; the report gives the fewest nnz "
                        f"that does (default {DEFAULT_MIN_RATE:g}: more often than not)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--quick", action="store_true",
                   help="run a small search and pruner sweep first (into DIR/runs), then audit it")
    epochs = default_of(run_quick_audit, "epochs")
    p.add_argument("--epochs", type=positive_int, default=epochs, help=f"epochs per run for --quick (default {epochs})")
    p.add_argument("--quiet", action="store_true", help="--quick: no progress bars")
    device, jobs = default_of(run_quick_audit, "device"), default_of(run_quick_audit, "jobs")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=device, help="--quick: where torch runs")
    p.add_argument("--jobs", type=positive_int, default=jobs, help=f"--quick: parallel workers / threads (default {jobs})")
    p.set_defaults(func=_run)


def _run(args):
    if not 0 < args.min_rate <= 1:
        raise CubistError(f"--min-rate {args.min_rate:g} is not a success rate in (0, 1]")
    if args.quick:
        if args.results:
            raise CubistError("--quick writes its own results; give no RESULTS")
        if len(args.target) > 1:
            raise CubistError("--quick audits one --target")
        report = run_quick_audit(args.out, epochs=args.epochs, target=args.target[0], device=args.device,
                                 jobs=args.jobs, figures=not args.no_figures, quiet=args.quiet,
                                 min_rate=args.min_rate, log=print)
    else:
        if not args.results:
            raise CubistError("give at least one RESULTS directory (or --quick)")
        report = run_audit(args.results, args.target, args.out, methods=args.methods,
                           figures=not args.no_figures, formats=args.formats, min_rate=args.min_rate)
    unreached = set(report.get("unreached", ()))
    for key, tables in report["tables"].items():
        label, t = key if isinstance(key, tuple) else (None, key)
        where = f"Data set {label}. " if label else ""
        if key in unreached:   # one line per unreached target, then what was tried
            print(where + f"Target {t:g}: " + unreached_note(t, tables["best_accuracy"]))
            tried = tables["best_accuracy"]
            cols = ["method", "widths", "runs", "levels", "fewest_nnz", "most_nnz", "best_acc", "best_nnz",
                    "best_at_fewest"]
            print(text_table(tried[[c for c in cols if c in tried.columns]]))
            print()
            continue
        print(where + f"Target {t:g}: fewest nonzero weights reaching it; {RATE} at that nnz "
              f"(best grid point, 95% interval); rate_nnz: fewest nnz with rate >= {args.min_rate:g}")
        head = report_view("headline", tables)
        cols = ["rank", "method", "widths", "nnz", "effective_nnz", "ratio", RATE, "inits", "rate_nnz", "status"]
        print(text_table(head[[c for c in cols if c in head.columns]]))
        print()
    print(f"wrote {os.path.join(args.out, 'report.md')} and {os.path.join(args.out, 'report.html')}")
    if args.quick:
        runs = os.path.join(args.out, "runs")
        print(f"the runs are kept in {runs}" + (f": `cubist audit {runs} --target T` audits them at another target"
                                                 if unreached else ""))
    return 0
