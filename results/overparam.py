"""The over-parameterisation matrix (issue 12, item 2): what ``results/run_overparam.sh`` runs.

Equal hidden widths ``W`` in :data:`WIDTHS` (``cubist prune --width W``), the weight budgets
:data:`BUDGETS` below the width's weight count (:func:`budgets`), every method variant of
:data:`METHODS` (those of ``results/run_reference.sh``, RigL, FORCE, Iter-SNIP and ProsPr), the
paper's pruning grid (lr 0.05, 0.1, 0.2 x cosine, step, constant) up to width
:data:`FULL_GRID_MAX_WIDTH`. Wider
networks get a **reduced grid**: for each variant the single grid point that did best at
width :data:`GRID_SOURCE_WIDTH` in the same store (:func:`best_grid_point`: most runs reaching 95%
train accuracy over all budgets and inits, then the highest mean train accuracy, then the grid
order), chosen once and frozen in ``OUT/reduced_grid.json`` so that a resume trains the same
runs; the rows record it (their ``lr`` and ``schedule``). Replicas per chunk: :func:`chunk_size`.

    python results/overparam.py budgets W            the budgets of width W (comma list)
    python results/overparam.py plan W VARIANT --out DIR [--seeds K] [--jobs J]
                                                     the cubist prune arguments for one sweep
    python results/overparam.py grid DIR VARIANT [--seeds K]   the reduced grid point (and why)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from variants import VARIANTS  # noqa: E402

WIDTHS = (3, 4, 5, 6, 7, 8, 16, 32, 64, 128, 256)
BUDGETS = (*range(15, 27), 30, 33, 37, 40, 44, 50, 53, 55, 57, 60, 65)
LRS = (0.05, 0.1, 0.2)
SCHEDULES = ("cosine", "step", "constant")
FULL_GRID_MAX_WIDTH = 32   # wider widths: one grid point per variant (see the header of run_overparam.sh)
GRID_SOURCE_WIDTH = 32     # the width whose best grid point the reduced grid takes
TARGET = 0.95
GRID_FILE = "reduced_grid.json"

# variant -> cubist prune method flags: results/variants.py (every variant, the 18 reference ones and
# RigL, FORCE, Iter-SNIP, ProsPr; iterative methods 5 rounds)
METHODS = VARIANTS


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


def is_full_grid(width: int) -> bool:
    return width <= FULL_GRID_MAX_WIDTH


def sweep_config(width: int, variant: str, lrs=LRS, schedules=SCHEDULES, seeds: int = 3):
    """The :class:`pruners.runner.SweepConfig` of one sweep, parsed from the flags the script passes."""
    from cubist.cli import build_parser
    from cubist.cli.prune import sweep_config_from_args
    argv = ["prune", *METHODS[variant].split(), "--width", str(width), "--nnz", _csv(budgets(width)),
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


def reduced_grid(out: str, variant: str, seeds: int = 3) -> dict:
    """The frozen reduced grid point of ``variant`` in store ``out`` (chosen from width
    :data:`GRID_SOURCE_WIDTH` the first time, then read from ``OUT/reduced_grid.json``)."""
    path = os.path.join(out, GRID_FILE)
    chosen = json.load(open(path)) if os.path.exists(path) else {}
    if variant in chosen:
        return chosen[variant]
    from cubist.store import ResultStore
    from pruners.runner import build_runs, load_data
    cfg = sweep_config(GRID_SOURCE_WIDTH, variant, seeds=seeds)
    want = {r.run_id for r in build_runs(cfg, load_data(cfg))}
    store = ResultStore(out)
    have = want & store.done() if os.path.isdir(out) else set()
    if have != want:
        raise SystemExit(f"overparam: width {GRID_SOURCE_WIDTH} of {variant} has {len(have)} of its {len(want)} runs "
                         f"in {out}; run it first (bash results/run_overparam.sh {GRID_SOURCE_WIDTH})")
    df = store.load(["lr", "schedule", "train_acc", "diverged"])
    point = best_grid_point(df[df["run_id"].isin(want)])
    point.update(from_width=GRID_SOURCE_WIDTH, seeds=seeds, target=TARGET)
    chosen[variant] = point
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(chosen, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return point


def plan(width: int, variant: str, out: str, seeds: int = 3, jobs: int = 2) -> list[str]:
    """The ``cubist prune`` arguments of one sweep of the matrix."""
    if variant not in METHODS:
        raise SystemExit(f"overparam: unknown variant {variant!r}; choose from {', '.join(METHODS)}")
    if is_full_grid(width):
        lrs, schedules = LRS, SCHEDULES
    else:
        point = reduced_grid(out, variant, seeds)
        lrs, schedules = (point["lr"],), (point["schedule"],)
    nnz = budgets(width)
    n_runs = len(nnz) * len(lrs) * len(schedules) * seeds
    return [*METHODS[variant].split(), "--width", str(width), "--nnz", _csv(nnz), "--lrs", _csv(lrs),
            "--schedules", ",".join(schedules), "--seeds", str(seeds), "--chunk", str(chunk_size(n_runs, width, jobs)),
            "--out", out, "--jobs", str(jobs), "--quiet"]


def _csv(values) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("budgets")
    b.add_argument("width", type=int)
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
    args = ap.parse_args(argv)
    if args.cmd == "budgets":
        print(_csv(budgets(args.width)))
    elif args.cmd == "plan":
        print(" ".join(plan(args.width, args.variant, args.out, args.seeds, args.jobs)))
    else:
        print(json.dumps(reduced_grid(args.out, args.variant, args.seeds), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
