"""Throughput of the pruner engines by width and method: batched vs one run at a time, same runs.

For each hidden width ``W`` (equal hidden widths, default 16, 64, 256) and method (default GMP
and one new method of each kind: FORCE at init, RigL dynamic, Iter-SNIP iterative at init), the
batched engine trains ``R`` runs of the paper's pruning grid (the width's budgets below its
weight count x lrs x schedules, cycled over seeds) as one :class:`pruners.layers.BatchedMLP`;
the baseline trains the first ``--single-runs`` of the same runs one at a time as a plain
``nn.Linear`` MLP with ``torch.optim.SGD`` (the paper's per-run loop), through the same method
code. Both include init, pruning, training and the final evaluation, on the full Cubist Spiral,
in one process with the same torch thread count, after an untimed warm-up of each method.

Runs are shortened to ``E`` epochs (default ``max(2, min(10, 320 // W))``: 10 at width 16, 5 at
64, 2 at 256; GMP's 200 pruning events scaled along), the same for both engines, so the ratio
compares equal work. The 50-epoch rate is estimated as ``rate x E / 50``, which charges the
fixed costs (init, pruning at init, evaluation) 50 / E times: an underestimate. ``R`` per width:
``--replicas`` (default ``max(4, min(128, 2048 // W))``).

Prints a table width x method (wall seconds, runs/s at E epochs, the 50-epoch estimate, the
ratio) and ``RESULT ratio=W/method:x,... batched_per_s=W/method:r,... single_per_s=...`` (the
50-epoch estimates).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from cubist.masks import dense_weight_count  # noqa: E402
from cubist.train import resolve_device  # noqa: E402
from pruners.runner import SweepConfig, build_runs, load_data, run_chunk  # noqa: E402

BUDGETS = (15, 20, 25, 30, 40, 50, 65)
LRS = (0.05, 0.1, 0.2)
SCHEDULES = ("cosine", "step", "constant")
KINDS = {"gmp": "gradual", "force": "at init", "rigl": "dynamic", "itersnip": "iterative at init"}


def default_epochs(width: int) -> int:
    return max(2, min(10, 320 // width))


def default_replicas(width: int) -> int:
    return max(4, min(128, 2048 // width))


def sweep(method: str, width: int, epochs: int, replicas: int, device, **kw) -> SweepConfig:
    widths = (2, width, width, width, 1)
    nnz = tuple(f for f in BUDGETS if f < dense_weight_count(widths))
    params = {"prune_steps": max(1, round(200 * epochs / 50))} if method == "gmp" else {}
    seeds = -(-replicas // (len(nnz) * len(LRS) * len(SCHEDULES)))
    return SweepConfig(method=method, widths=widths, nnz=nnz, lrs=LRS, schedules=SCHEDULES, seeds=max(1, seeds),
                       epochs=epochs, method_params=params, chunk=replicas, device=device.type, **kw)


def _timed(fn, device) -> float:
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(method: str, width: int, epochs: int, replicas: int, single_runs: int, device, data=None) -> dict:
    cfg_b = sweep(method, width, epochs, replicas, device)
    data = data if data is not None else load_data(cfg_b)
    runs = list(itertools.islice(itertools.cycle(build_runs(cfg_b, data)), replicas))
    rows_b = []
    tb = _timed(lambda: rows_b.extend(run_chunk(cfg_b, runs, data, device)), device)
    cfg_s = sweep(method, width, epochs, replicas, device, engine="single")
    runs_s = [r for r in build_runs(cfg_s, data)][:single_runs]   # the batched chunk's first runs
    rows_s = []
    ts = _timed(lambda: [rows_s.extend(run_chunk(cfg_s, [r], data, device)) for r in runs_s], device)
    same = {r["run_id"]: r["train_acc"] for r in rows_b}
    diff = max(abs(same[r["run_id"]] - r["train_acc"]) for r in rows_s)
    b, s = len(rows_b) / tb, len(rows_s) / ts
    return {"width": width, "method": method, "R": len(rows_b), "epochs": epochs, "batched_s": tb,
            "single_s": ts, "single_runs": len(rows_s), "batched_per_s": b, "single_per_s": s,
            "batched_50": b * epochs / 50, "single_50": s * epochs / 50, "ratio": b / s, "acc_diff": diff}


def csv(kind):
    return lambda s: [kind(v) for v in s.split(",") if v]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", type=csv(int), default=[16, 64, 256], help="hidden widths (default 16,64,256)")
    p.add_argument("--methods", type=csv(str), default=list(KINDS), help="methods (default gmp,force,rigl,itersnip)")
    p.add_argument("--replicas", type=int, default=0, help="runs batched per chunk (default by width)")
    p.add_argument("--epochs", type=int, default=0, help="epochs per run, both engines (default by width)")
    p.add_argument("--single-runs", type=int, default=2, help="runs timed one at a time (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for both engines")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (both engines)")
    args = p.parse_args(argv)
    if min(args.widths, default=0) < 1 or args.single_runs < 1 or args.replicas < 0 or args.epochs < 0:
        p.error("widths and --single-runs must be >= 1, --replicas and --epochs >= 0")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device} ({torch.get_num_threads()} torch threads), load average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    head = (f"{'width':>5}{'method':>10}{'R':>5}{'epochs':>7}{'batched s':>10}{'single s':>9}"
            f"{'batched/s':>10}{'single/s':>9}{'50-ep b/s':>10}{'50-ep s/s':>10}{'ratio':>7}")
    print(head, flush=True)
    out, data = [], load_data(SweepConfig())   # the spiral, whatever the width
    for m in args.methods:   # warm-up, untimed: first calls pay for imports and lazy set-up
        measure(m, 3, 1, 2, 1, device, data)
    for w in args.widths:
        for m in args.methods:
            r = measure(m, w, args.epochs or default_epochs(w), args.replicas or default_replicas(w),
                        args.single_runs, device, data)
            out.append(r)
            print(f"{w:>5}{m:>10}{r['R']:>5}{r['epochs']:>7}{r['batched_s']:>10.1f}{r['single_s']:>9.1f}"
                  f"{r['batched_per_s']:>10.3f}{r['single_per_s']:>9.3f}{r['batched_50']:>10.3f}"
                  f"{r['single_50']:>10.4f}{r['ratio']:>7.1f}", flush=True)
    print(f"single runs' train accuracy vs the same runs batched: max |diff| "
          f"{max(r['acc_diff'] for r in out):.2e}; load average at end {os.getloadavg()[0]:.2f}")

    def field(key, fmt):
        return ",".join(f"{r['width']}/{r['method']}:{r[key]:{fmt}}" for r in out)
    print(f"RESULT ratio={field('ratio', '.1f')} batched_per_s={field('batched_50', '.4f')} "
          f"single_per_s={field('single_50', '.4f')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
