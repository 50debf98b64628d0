"""``cubist audit``: the report of result stores, and ``--quick``, a small end-to-end audit (a search,
a few pruner sweeps, then the report) that the README's first command runs.

The report is replaced as a whole (:func:`write_report_staged`): its files (``report.md``,
``report.html``, the figures, the folders of a per-data-set report) are first written into a
staging folder ``DIR/.audit-staging-PID-*``; when all are there, the reports this audit replaces are
removed, the figures moved into place (each by an atomic rename) and the new reports moved in last.
A killed audit therefore never leaves new figures beside an old report: before the swap ``DIR`` is
as it was, during it ``DIR`` holds no report, after it the new report. Staging folders of dead
audits are removed by the next audit into ``DIR``. Every flag is checked before any work: a bad
``--out`` (an existing file, a path under a file) is found before ``--quick`` trains anything.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

from cubist.data import DataConfig
from cubist.masks import dense_weight_count
from cubist.stats import DEFAULT_TARGET
from cubist.train import TrainConfig
from cubist.report import tables as A
from cubist.report.audit import (DEFAULT_MIN_RATE, DEFAULT_OUT, RATE, report_view, retrain_notes, text_table,
                                 unreached_note, write_report)

from .common import CubistError, add_target, command_help, csv, default_of, positive_int


# -- the report, replaced as a whole -----------------------------------------------------------
STAGING = ".audit-staging-"
REPORT_NAMES = ("report.md", "report.html")


def check_out_dir(path: str, flag: str = "--out") -> None:
    """Fail before any work when ``path`` cannot be (or become) a directory to write into."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CubistError(f"{flag} {path} exists and is not a directory")
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise CubistError(f"cannot write {flag} {path}: {ancestor} is not a directory")
    where = path if os.path.isdir(path) else ancestor
    if not os.access(where, os.W_OK | os.X_OK):
        raise CubistError(f"cannot write {flag} {path}: permission denied")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_staging(out_dir: str) -> None:
    for name in os.listdir(out_dir):
        pid = name[len(STAGING):].split("-")[0]
        if name.startswith(STAGING) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def _commit(staging: str, out_dir: str) -> None:
    """Move the staged report into ``out_dir``: old reports out first, figures in, new reports last."""
    files = [os.path.relpath(os.path.join(d, f), staging) for d, _, names in os.walk(staging) for f in names]
    reports = sorted((f for f in files if os.path.basename(f) in REPORT_NAMES), key=lambda f: -f.count(os.sep))
    for rel in reports:   # deepest first, so the top report (a per-data-set index) comes last
        if os.path.isfile(os.path.join(out_dir, rel)):
            os.remove(os.path.join(out_dir, rel))
    for rel in [f for f in files if f not in reports] + reports:
        os.makedirs(os.path.dirname(os.path.join(out_dir, rel)), exist_ok=True)
        os.replace(os.path.join(staging, rel), os.path.join(out_dir, rel))


def write_report_staged(df, targets, out_dir: str, **kw) -> dict:
    """:func:`cubist.report.audit.write_report` into ``out_dir``, replacing its report as a whole
    (see the module docstring); the returned ``files`` are the final paths."""
    created = not os.path.exists(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    _remove_dead_staging(out_dir)
    staging = tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=out_dir)
    try:
        report = write_report(df, targets, staging, **kw)
        _commit(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not os.listdir(out_dir):   # a failed first audit leaves no empty folder
            os.rmdir(out_dir)
    report["files"] = [os.path.join(out_dir, os.path.relpath(f, staging)) for f in report["files"]]
    return report


def audit_stores(results, targets, out_dir: str, *, progress: bool = False, **kw) -> dict:
    """Load the result stores (a bad one fails here, before anything is written), then write the
    report (:func:`write_report_staged`). ``progress``: say on stderr what it reads and does,
    where that takes noticeable time (:func:`cubist.report.tables.load_results`)."""
    results = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    df = A.load_results(results, progress=progress)
    if progress and len(df) >= A.ROWS_NOTICE:
        print("writing the report...", file=sys.stderr, flush=True)
    return write_report_staged(df, targets, out_dir, sources=results, **kw)


# -- --quick ---------------------------------------------------------------------------------
QUICK_METHODS = ("gmp", "snip", "synflow", "random")   # one training run each: cheap
# (4,2,5) is the architecture with the fewest weights that phase 1 found reaching 95% (results/),
# and its phase-2 search with lr 0.05 and cosine annealing reaches 95% at 24 weights (a timed quick
# audit at commit 13f1cff: levels 18-24, 3,392 runs, each from its own init).
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


# -- the quick audit's plan and its estimated time ---------------------------------------------
# The cost model of the plan, fitted to one timed `cubist audit --quick` on defaults (--jobs 1, CPU,
# 50 epochs) on this project's 2-core machine while other jobs ran on it (load average about 3),
# from the "done in" lines it prints: the search trained 3,392 runs (levels 18-24, where it
# stopped) in 57.4 s after 24.3 s of compiling the engine; the four pruners took 14.8-19.6 s a
# sweep at (4,2,5) and 22.2-24.6 s at width 16, each sweep one batched model of 2 or 4 runs (a
# batched model costs about the same per epoch whatever its few runs: the cost is per chunk); the
# report with its figures 4.4 s. An estimate: other machines and loads differ, and the search's
# early exits make a level cheaper the more of its runs die early.
SEARCH_S_PER_RUN_EPOCH = 57.4 / (3392 * 50)
PRUNE_S_PER_CHUNK_EPOCH = {"narrow": 16.9 / 50, "wide": 23.6 / 50}   # means over the four methods
REPORT_S = 4.4
ENGINE_COMPILE_S = 25.0   # numba compiling the search engine on its first use (a cold cache)


@dataclass
class QuickStage:
    """One stage of the quick audit: what it trains, and its estimated seconds."""

    what: str
    runs: int        # runs the stage plans (at most, for the search)
    stored: int      # of which already in the store (not trained again)
    seconds: float   # estimated

    def line(self) -> str:
        left = f", {self.stored} of them stored" if self.stored else ""
        runs = f"{self.runs:,} runs{left}, " if self.runs else ""
        return f"  {self.what}: {runs}about {_duration(self.seconds)}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def quick_plan(store, data, grid, *, hidden=QUICK_HIDDEN, max_nnz=None, target=DEFAULT_TARGET, sweeps=()) -> list:
    """The stages of the quick audit (:class:`QuickStage`) with their estimated times (the cost
    model above, CPU figures): the search's levels (every level up to ``max_nnz``, or all of them:
    a bound for a sparsest-first search), each pruner sweep (its chunks with a run not stored yet,
    trained whole), the report."""
    import torch

    from cubist.masks import mask_key
    from cubist.store import run_id
    from pruners.runner import build_runs, epochs_per_run, load_data, sweep_chunks
    from search.enumerate import enumerate_masks
    from search.phases import SearchRun

    done = store.done()
    widths = (data.X.shape[1], *hidden, 1)
    ids, levels = [], set()
    for masks in enumerate_masks(widths, symmetry="orbits"):
        nnz = int(sum(m.sum() for m in masks))
        if max_nnz is not None and nnz > max_nnz:
            continue
        levels.add(nnz)
        key = mask_key(masks)
        for lr, sch, k in grid.points():
            ids.append(run_id(SearchRun("search_masks", widths, key, lr, sch, k, grid, "orbits",
                                        data=data.config if data.config is not None else DataConfig())
                              .to_row(data.id)))
    stored = sum(r in done for r in ids)
    how = (f"every level up to {max_nnz} weights" if max_nnz is not None
           else f"sparsest level first, stopping at the first that reaches {target:g}")
    stages = [QuickStage(f"search {A.widths_label(widths)}, at most {len(levels)} levels ({min(levels)}-{max(levels)} "
                         f"weights), {how}", len(ids), stored,
                         (len(ids) - stored) * grid.epochs * SEARCH_S_PER_RUN_EPOCH)]
    for cfg in sweeps:
        runs = build_runs(cfg, load_data(cfg))
        chunks = [c for c in sweep_chunks(cfg, runs, torch.device("cpu")) if any(r.run_id not in done for r in c)]
        wide = "wide" if max(cfg.widths[1:-1]) > 8 else "narrow"
        cost = sum(epochs_per_run(cfg, c[0]) for c in chunks) * PRUNE_S_PER_CHUNK_EPOCH[wide]
        left = [r for r in runs if r.run_id not in done]
        stages.append(QuickStage(f"prune {cfg.method} {A.widths_label(cfg.widths)} at {', '.join(map(str, cfg.nnz))} "
                                 f"weights", len(runs), len(runs) - len(left), cost))
    stages.append(QuickStage("the report and its figures", 0, 0, REPORT_S))
    return stages


def run_quick_audit(out_dir: str = DEFAULT_OUT, *, epochs: int = TrainConfig.epochs, target: float = DEFAULT_TARGET,
                    hidden=QUICK_HIDDEN, max_nnz: int | None = None, methods=QUICK_METHODS, widths=QUICK_WIDTHS,
                    nnz=QUICK_NNZ, lrs=(0.05,), schedules=("cosine",), seeds: int = 1, device: str = "auto",
                    jobs: int = 1, quiet: bool = True, figures: bool = True, formats=("png", "svg"),
                    min_rate: float = DEFAULT_MIN_RATE, log=print) -> dict:
    """A small end-to-end audit into ``out_dir`` (results in ``out_dir/runs``, resumable).

    1. the search's phase 2 for ``hidden`` over the mask orbits, sparsest level first, until a
       level reaches ``target`` (or every level up to ``max_nnz``) (``search.phases.search_masks``)
       on the grid ``lrs x schedules x seeds``;
    2. each pruner of ``methods`` at each of ``widths`` and budgets ``nnz`` (``pruners.run_sweep``);
    3. the report of the result store (:func:`audit_stores`; a report also when no run reached
       ``target``: it says so, and the runs stay in ``out_dir/runs``).

    Fewer ``epochs`` than the paper's 50 make every number an upper bound on what 50 give.
    """
    import time

    import pruners
    from search import phases
    from cubist.data import Dataset
    from cubist.store import ResultStore
    store = ResultStore(os.path.join(out_dir, "runs"))
    grid = phases.Grid(lrs=tuple(lrs), schedules=tuple(schedules), seeds=seeds, epochs=epochs)
    sweeps = quick_sweeps(methods=methods, widths=widths, nnz=nnz, lrs=lrs, schedules=schedules, seeds=seeds,
                          epochs=epochs, device=device)
    data = Dataset.spiral()
    stages = quick_plan(store, data, grid, hidden=hidden, max_nnz=max_nnz, target=target, sweeps=sweeps)
    total = sum(s.seconds for s in stages)
    log(f"quick audit into {out_dir}, {epochs} epochs per run; the plan, with estimated times (a cost model "
        f"measured on a loaded 2-core CPU machine: an estimate):")
    for s in stages:
        log(s.line())
    log(f"  estimated total: about {_duration(total)} (plus about {ENGINE_COMPILE_S:.0f} s the first time, while "
        f"numba compiles the search engine)")
    t0, before = time.perf_counter(), len(store.done())
    phases.search_masks(tuple(hidden), target, grid, store=store, data=data, max_nnz=max_nnz, jobs=jobs, quiet=quiet,
                        log=log if not quiet else (lambda *a, **k: None))
    log(f"quick audit: search done in {time.perf_counter() - t0:.1f} s ({len(store.done()) - before} runs stored)")
    for cfg in sweeps:
        t1, before = time.perf_counter(), len(store.done())
        log(f"quick audit: prune {cfg.method} {A.widths_label(cfg.widths)} at {cfg.nnz}")
        pruners.run_sweep(cfg, store=store, progress=not quiet, threads=jobs)
        log(f"quick audit: prune {cfg.method} {A.widths_label(cfg.widths)} done in {time.perf_counter() - t1:.1f} s "
            f"({len(store.done()) - before} runs stored)")
    t2 = time.perf_counter()
    report = audit_stores([store.path], [target], out_dir, methods=list(methods), figures=figures, formats=formats,
                          min_rate=min_rate, progress=not quiet)
    log(f"quick audit: report done in {time.perf_counter() - t2:.1f} s; in all {time.perf_counter() - t0:.1f} s")
    return report


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
    formats = default_of(write_report, "formats")
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
    p.add_argument("--epochs", type=positive_int, help=f"--quick: epochs per run (default {epochs})")
    p.add_argument("--quiet", action="store_true", help="no progress bars or status lines on stderr")
    device, jobs = default_of(run_quick_audit, "device"), default_of(run_quick_audit, "jobs")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=f"--quick: where torch runs (default {device})")
    p.add_argument("--jobs", type=positive_int, help=f"--quick: parallel workers / threads (default {jobs})")
    p.set_defaults(func=_run)


QUICK_ONLY = ("epochs", "device", "jobs")   # flags of --quick (None unless given)


def _run(args):
    if not 0 < args.min_rate <= 1:
        raise CubistError(f"--min-rate {args.min_rate:g} is not a success rate in (0, 1]")
    check_out_dir(args.out)
    if args.quick:
        if args.results:
            raise CubistError("--quick writes its own results; give no RESULTS")
        if len(args.target) > 1:
            raise CubistError("--quick audits one --target")
        if args.methods:
            raise CubistError(f"--methods selects methods of RESULTS; --quick runs its own ({', '.join(QUICK_METHODS)})")
        given = {k: getattr(args, k) for k in ("epochs", "device", "jobs") if getattr(args, k) is not None}
        report = run_quick_audit(args.out, target=args.target[0], quiet=bool(args.quiet), figures=not args.no_figures,
                                 formats=args.formats, min_rate=args.min_rate, log=print, **given)
    else:
        given = [k for k in QUICK_ONLY if getattr(args, k) is not None]
        if given:
            raise CubistError(f"--{given[0]} applies only with --quick (it sets how --quick trains)")
        if not args.results:
            raise CubistError("give at least one RESULTS directory (or --quick)")
        report = audit_stores(args.results, args.target, args.out, methods=args.methods,
                              figures=not args.no_figures, formats=args.formats, min_rate=args.min_rate,
                              progress=not args.quiet)
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
        question = report_view("question", tables)
        if len(question):
            print(where + f"Target {t:g}: PILoT, DWF, LRR and their combinations against the search's sparsest "
                  f"(the report's section 'Do PILoT, DWF and LRR elude the sparsest models?')")
            print(text_table(question))
            for line in retrain_notes(tables["method_audit"], args.results, A.is_question_method)[1:]:
                print(line.replace("`", ""))
            print()
    print(f"wrote {os.path.join(args.out, 'report.md')} and {os.path.join(args.out, 'report.html')}")
    if args.quick:
        runs = os.path.join(args.out, "runs")
        print(f"the runs are kept in {runs}" + (f": `cubist audit {runs} --target T` audits them at another target"
                                                 if unreached else ""))
    return 0
