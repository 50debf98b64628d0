"""The over-parameterisation matrix (issue 12, item 2): what ``results/run_overparam.sh`` runs.

Equal hidden widths ``W`` in :data:`WIDTHS` (``cubist prune --width W``), the weight budgets
:data:`BUDGETS` below the width's weight count (:func:`budgets`), every method variant of
:data:`METHODS` (those of ``results/run_reference.sh``, RigL, FORCE, Iter-SNIP and ProsPr).

Grid. The paper's pruning grid (lr 0.05, 0.1, 0.2 x cosine, step, constant) at widths up to
``full_max`` (:data:`FULL_GRID_MAX_WIDTH`, 0 by default: no width); the others get a **reduced
grid**: for each variant the single grid point that did best in a full-grid source sweep
(:class:`GridSource`; :func:`best_grid_point`: most runs reaching 95% train accuracy over all its
budgets and inits, then the highest mean train accuracy, then the grid order), chosen once and
frozen in ``OUT/reduced_grid.json`` (with the source it came from) so that a resume trains the
same runs; the rows record it (their ``lr`` and ``schedule``). The default source
(:data:`REFERENCE_SOURCE`) is the reference sweep at width 16 in ``results/prune``
(``bash results/run_reference.sh 16``: budgets 15, 20, 25, 30, 40, 50, 65, the full grid, 3
inits per grid point); a working point of :data:`variants.WORKING_POINTS` has its hyper-parameter
sweep instead (:data:`SOURCES`: ``results/hparams``, width 16, budgets 20, 30, 50), the sweep it was
chosen in; ``--full-grid-max-width 32 --grid-from OUT --grid-width 32`` gives the
design of the paper's grid up to width 32 and width 32's best point above it (126 h of 2 cores).
Replicas per chunk: :func:`chunk_size`.

    python results/overparam.py budgets W            the budgets of width W (comma list)
    python results/overparam.py plan W VARIANT --out DIR [--seeds K] [--jobs J] [SOURCE]
                                                     the cubist prune arguments for one sweep
    python results/overparam.py grid DIR VARIANT [SOURCE]   the reduced grid point (and why)
    python results/overparam.py summary DIR [--target T]    per width, each variant's fewest budget with
                                                     a run reaching T (markdown; results/README.md's table)
  SOURCE: [--full-grid-max-width W] [--grid-from STORE] [--grid-width W] [--grid-nnz LIST] [--grid-seeds K]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "results"))

from variants import VARIANTS, WORKING_POINTS  # noqa: E402

WIDTHS = (3, 4, 5, 6, 7, 8, 16, 32, 64, 128, 256)
BUDGETS = (*range(15, 27), 30, 33, 37, 40, 44, 50, 53, 55, 57, 60, 65)
LRS = (0.05, 0.1, 0.2)
SCHEDULES = ("cosine", "step", "constant")
FULL_GRID_MAX_WIDTH = 0    # widths up to this get the full grid; wider ones one grid point per variant
TARGET = 0.95
GRID_FILE = "reduced_grid.json"

# variant -> cubist prune method flags: results/variants.py (every variant, the 18 reference ones and
# RigL, FORCE, Iter-SNIP, ProsPr; iterative methods 5 rounds; and the working points that are not a
# method's defaults, each reported under its method's name: a store of their own)
METHODS = {**VARIANTS, **WORKING_POINTS}


@dataclass(frozen=True)
class GridSource:
    """The full-grid sweep whose best grid point per variant is the reduced grid: the variant at
    hidden width ``width``, budgets ``nnz`` (None: :func:`budgets` of that width), the paper's grid
    and ``seeds`` inits per grid point, in the store ``store`` (every one of its runs must be there)."""
    store: str
    width: int = 16
    nnz: tuple | None = (15, 20, 25, 30, 40, 50, 65)
    seeds: int = 3

    def describe(self) -> dict:
        """What ``reduced_grid.json`` records of the source (the store relative to the checkout)."""
        store = Path(self.store).resolve()
        return {"from_store": str(store.relative_to(ROOT) if store.is_relative_to(ROOT) else store),
                "from_width": self.width, "from_seeds": self.seeds,
                "from_nnz": list(self.nnz if self.nnz is not None else budgets(self.width))}


REFERENCE_SOURCE = GridSource(str(ROOT / "results" / "prune"))   # bash results/run_reference.sh 16
# a working point's grid source: the hyper-parameter sweep it was chosen in (bash results/run_hparams.sh)
SOURCES = {v: GridSource(str(ROOT / "results" / "hparams"), 16, (20, 30, 50), 3) for v in WORKING_POINTS}


def grid_source(variant: str, store=None, width=None, nnz=None, seeds=None) -> GridSource:
    """The full-grid sweep ``variant``'s reduced grid point comes from: its own in :data:`SOURCES`,
    else :data:`REFERENCE_SOURCE`, each field given replacing the default's. Budgets: those given,
    else those of the known source (:data:`REFERENCE_SOURCE` or the variant's own) whose store it
    is, else (another store, a matrix's own) :func:`budgets` of the width."""
    default = SOURCES.get(variant, REFERENCE_SOURCE)
    store = default.store if store is None else store
    if nnz is None:
        known = [s for s in (default, REFERENCE_SOURCE) if os.path.abspath(s.store) == os.path.abspath(store)]
        nnz = known[0].nnz if known else None
    return GridSource(store, default.width if width is None else width, nnz,
                      default.seeds if seeds is None else seeds)


def widths_of(width: int) -> tuple:
    return (2, width, width, width, 1)


def budgets(width: int, candidates=BUDGETS) -> list[int]:
    """The budgets below the weight count of width ``width`` (the dense network is no budget)."""
    from cubist.masks import dense_weight_count
    total = dense_weight_count(widths_of(width))
    return [int(f) for f in candidates if f < total]


def max_chunk(width: int) -> int:
    """Replicas per chunk at most: one ``(R, W, W)`` float32 weight tensor within 8 MiB
    (``R <= 2**21 / W**2``), at most 256 (the CPU default). At width 256 a chunk of 256 takes
    1.7x the CPU time per run of a chunk of 32 (the mask, gradient and optimiser passes over
    the weights then stream from memory instead of cache)."""
    return max(1, min(256, 2 ** 21 // width ** 2))


def chunk_size(n_runs: int, width: int, jobs: int) -> int:
    """``--chunk`` for a sweep of ``n_runs`` runs (one chunk group) with ``jobs`` workers: at most
    :func:`max_chunk`, in a multiple of ``jobs`` chunks of balanced size (no worker idles while
    the other trains a last chunk)."""
    jobs = max(1, jobs)
    n_chunks = jobs * math.ceil(n_runs / (jobs * max_chunk(width)))
    return max(1, math.ceil(n_runs / n_chunks))


def sweep_config(width: int, variant: str, lrs=LRS, schedules=SCHEDULES, seeds: int = 3, nnz=None):
    """The :class:`pruners.runner.SweepConfig` of one sweep, parsed from the flags the script passes
    (budgets ``nnz``, by default :func:`budgets` of the width)."""
    from cubist.cli import build_parser
    from cubist.cli.prune import sweep_config_from_args
    nnz = budgets(width) if nnz is None else nnz
    argv = ["prune", *METHODS[variant].split(), "--width", str(width), "--nnz", _csv(nnz),
            "--lrs", _csv(lrs), "--schedules", ",".join(schedules), "--seeds", str(seeds), "--out", "unused"]
    return sweep_config_from_args(build_parser(argv).parse_args(argv))


def best_grid_point(df, target: float = TARGET, lrs=LRS, schedules=SCHEDULES) -> dict:
    """The best grid point of a DataFrame of rows (``lr``, ``schedule``, ``train_acc``,
    ``diverged``): most runs reaching ``target``, then the highest mean train accuracy (a
    diverged run counts 0), then the first in the grid order (lrs, then schedules)."""
    from cubist.stats import reached_target
    order = {(float(lr), s): i for i, (lr, s) in enumerate((lr, s) for lr in lrs for s in schedules)}
    df = df.assign(reached=reached_target(df["train_acc"], df["diverged"], target),
                   acc=df["train_acc"].where(~df["diverged"].astype(bool), 0.0).fillna(0.0))
    best = None
    for (lr, s), g in df.groupby(["lr", "schedule"]):
        key = (-int(g["reached"].sum()), -float(g["acc"].mean()), order.get((float(lr), s), len(order)))
        if best is None or key < best[0]:
            best = (key, {"lr": float(lr), "schedule": s, "runs": int(len(g)), "reached": int(g["reached"].sum()),
                          "mean_train_acc": round(float(g["acc"].mean()), 6)})
    if best is None:
        raise ValueError("no rows to choose a grid point from")
    return best[1]


def reduced_grid(out: str, variant: str, source: GridSource | None = None) -> dict:
    """The frozen reduced grid point of ``variant`` for the store ``out``: chosen from ``source``
    (default :func:`grid_source` of the variant)
    the first time, then read from ``OUT/reduced_grid.json``; a point frozen from another source
    is an error (one store, one design)."""
    source = grid_source(variant) if source is None else source
    path = os.path.join(out, GRID_FILE)
    chosen = json.load(open(path)) if os.path.exists(path) else {}
    where = source.describe()
    if variant in chosen:
        point = chosen[variant]
        was = {k: point.get(k) for k in where}
        if was != where:
            raise SystemExit(f"overparam: {path} froze {variant}'s grid point from {was}, not {where}; "
                             f"use that source or another --out")
        return point
    from cubist.store import ResultStore
    from pruners.runner import build_runs, load_data
    cfg = sweep_config(source.width, variant, seeds=source.seeds, nnz=source.nnz)
    want = {r.run_id for r in build_runs(cfg, load_data(cfg))}
    store = ResultStore(source.store)
    have = want & store.done() if os.path.isdir(source.store) else set()
    if have != want:
        raise SystemExit(f"overparam: the grid source (width {source.width} of {variant} in {source.store}) has "
                         f"{len(have)} of its {len(want)} runs; run it first (bash results/run_reference.sh "
                         f"{source.width}, or bash results/run_overparam.sh {source.width} for the matrix's own)")
    df = store.load(["lr", "schedule", "train_acc", "diverged"])
    point = best_grid_point(df[df["run_id"].isin(want)])
    point.update(where, target=TARGET)
    chosen[variant] = point
    os.makedirs(out, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(chosen, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return point


def plan(width: int, variant: str, out: str, seeds: int = 3, jobs: int = 2,
         full_max: int = FULL_GRID_MAX_WIDTH, source: GridSource | None = None) -> list[str]:
    """The ``cubist prune`` arguments of one sweep of the matrix: the full grid up to width
    ``full_max``, above it the reduced grid point from ``source`` (default :func:`grid_source`)."""
    if variant not in METHODS:
        raise SystemExit(f"overparam: unknown variant {variant!r}; choose from {', '.join(METHODS)}")
    if width <= full_max:
        lrs, schedules = LRS, SCHEDULES
    else:
        point = reduced_grid(out, variant, source)
        lrs, schedules = (point["lr"],), (point["schedule"],)
    nnz = budgets(width)
    n_runs = len(nnz) * len(lrs) * len(schedules) * seeds
    return [*METHODS[variant].split(), "--width", str(width), "--nnz", _csv(nnz), "--lrs", _csv(lrs),
            "--schedules", ",".join(schedules), "--seeds", str(seeds), "--chunk", str(chunk_size(n_runs, width, jobs)),
            "--out", out, "--jobs", str(jobs), "--quiet"]


def _csv(values) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _int_list(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None


def summary(df, target: float = TARGET, seeds: int = 3) -> list[dict]:
    """Per width of the matrix rows ``df`` (normalised, as :func:`cubist.report.tables.load_results`
    gives them): the runs, the variants complete there (every budget x ``seeds`` inits at one grid
    point), and for each variant its fewest budget with a run reaching ``target`` (train accuracy;
    a diverged run does not), the runs reaching there of those at that budget, and the fewest
    effective weights (on an input-to-output path) among them; variants without such a run in
    ``never``. Variants in :data:`METHODS` order within a budget."""
    from cubist.stats import reached_target
    order = {v: i for i, v in enumerate(METHODS)}
    df = df.assign(width=[w[1] for w in df["widths"]],
                   reached=reached_target(df["train_acc"], df["diverged"], target))
    out = []
    for width, g in sorted(df.groupby("width"), key=lambda x: x[0]):
        runs_per_variant = g.groupby("method").size()
        complete = int((runs_per_variant >= len(budgets(int(width))) * seeds).sum())
        reaching, never = [], []
        for variant, v in sorted(g.groupby("method"), key=lambda x: order.get(x[0], len(order))):
            hit = v[v["reached"]]
            if hit.empty:
                never.append(variant)
                continue
            budget = int(hit["target_nnz"].min())
            at = v[v["target_nnz"] == budget]
            reaching.append({"variant": variant, "budget": budget, "reached": int(at["reached"].sum()),
                             "runs": len(at), "effective": int(hit.loc[hit["target_nnz"] == budget, "effective_nnz"].min())})
        reaching.sort(key=lambda r: (r["budget"], order.get(r["variant"], len(order))))
        out.append({"width": int(width), "runs": len(g), "variants": len(runs_per_variant), "complete": complete,
                    "reaching": reaching, "never": never})
    return out


def summary_markdown(rows: list[dict], target: float = TARGET) -> str:
    """:func:`summary` as the table of results/README.md."""
    lines = [f"| width | runs | variants (complete) | reaching {target:g}: fewest budget (reaching/runs there) | never |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        cells = [f"{x['variant']} {x['budget']} ({x['reached']}/{x['runs']}"
                 + (f"; effective {x['effective']}" if x["effective"] < x["budget"] else "") + ")" for x in r["reaching"]]
        lines.append(f"| {r['width']} | {r['runs']:,} | {r['variants']} ({r['complete']}) | {', '.join(cells) or 'none'} "
                     f"| {', '.join(r['never']) or 'none'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("budgets")
    b.add_argument("width", type=int)
    m = sub.add_parser("summary")
    m.add_argument("out")
    m.add_argument("--target", type=float, default=TARGET)
    m.add_argument("--seeds", type=int, default=3, help="inits per budget of a complete variant")
    for name in ("plan", "grid"):
        q = sub.add_parser(name)
        if name == "plan":
            q.add_argument("width", type=int)
        else:
            q.add_argument("out")
        q.add_argument("variant")
        if name == "plan":
            q.add_argument("--out", required=True)
            q.add_argument("--jobs", type=int, default=2)
            q.add_argument("--seeds", type=int, default=3)
            q.add_argument("--full-grid-max-width", type=int, default=FULL_GRID_MAX_WIDTH)
        q.add_argument("--grid-from", default=None, help="the source sweep's store (default: results/prune, "
                       "a working point's results/hparams)")
        q.add_argument("--grid-width", type=int, default=None, help="its width (default 16)")
        q.add_argument("--grid-nnz", type=_int_list, default=None,
                       help="the source sweep's budgets (default: results/run_reference.sh's in results/prune, "
                            "results/run_hparams.sh's in results/hparams, else the matrix's own budgets of --grid-width)")
        q.add_argument("--grid-seeds", type=int, default=None, help="its inits per grid point (default 3)")
    args = ap.parse_args(argv)
    if args.cmd == "budgets":
        print(_csv(budgets(args.width)))
        return 0
    if args.cmd == "summary":
        from cubist.report.tables import load_results
        if not os.path.isdir(args.out):
            print(f"overparam: no store at {args.out}", file=sys.stderr)
            return 2
        print(summary_markdown(summary(load_results([args.out]), args.target, args.seeds), args.target))
        return 0
    if args.variant not in METHODS:
        print(f"overparam: unknown variant {args.variant!r}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    source = grid_source(args.variant, args.grid_from, args.grid_width, args.grid_nnz, args.grid_seeds)
    if args.cmd == "plan":
        print(" ".join(plan(args.width, args.variant, args.out, args.seeds, args.jobs, args.full_grid_max_width, source)))
    else:
        print(json.dumps(reduced_grid(args.out, args.variant, source), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
