"""Throughput of 50-epoch GMP runs at width 16 on the full Cubist Spiral: batched vs one at a time.

The batched engine trains ``--replicas`` runs (targets x lrs x schedules x seeds of the paper's
pruning grid, cycled) as one :class:`pruners.layers.BatchedMLP`; the baseline trains each run
alone as a plain ``nn.Linear`` MLP with ``torch.optim.SGD`` (the paper's per-run loop), through
the same pruning code. Both include init, pruning (200 cubic GMP events), training and the
final evaluation. To keep the default runtime to a few minutes the single baseline runs
``--single-epochs`` epochs per run (default 5 of 50, pruning events scaled along) and its rate
is scaled to 50-epoch runs by ``single-epochs / epochs`` (per-epoch cost is constant). Same
machine, same process, same torch thread count.

Prints both figures side by side and ends with
``RESULT batched_per_s=... single_per_s=... ratio=...``.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from cubist.train import resolve_device  # noqa: E402
from pruners.runner import SweepConfig, build_runs, load_data, run_chunk  # noqa: E402

NNZ = (15, 20, 25, 30, 40, 50, 65)
LRS = (0.05, 0.1, 0.2)
SCHEDULES = ("cosine", "step", "constant")


def grid_runs(cfg: SweepConfig, data, n: int):
    """``n`` runs of the paper's pruning grid (nnz x lr x schedule x seed), seeds as needed."""
    runs = build_runs(cfg, data)
    return list(itertools.islice(itertools.cycle(runs), n)) if n > len(runs) else runs[:n]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, default=128, help="runs trained together by the batched engine")
    p.add_argument("--epochs", type=int, default=50, help="epochs per batched run (default 50)")
    p.add_argument("--single-runs", type=int, default=3, help="runs timed one at a time")
    p.add_argument("--single-epochs", type=int, default=5, help="epochs per single run (scaled to --epochs)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for both engines")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (both engines)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    seeds = -(-args.replicas // (len(NNZ) * len(LRS) * len(SCHEDULES)))
    base = dict(method="gmp", nnz=NNZ, lrs=LRS, schedules=SCHEDULES, seeds=max(seeds, 1), device=device.type,
                keep_weights=True)
    cfg_b = SweepConfig(**base, epochs=args.epochs, chunk=args.replicas)
    data = load_data(cfg_b)
    runs_b = grid_runs(cfg_b, data, args.replicas)

    t0 = time.perf_counter()
    rows_b = run_chunk(cfg_b, runs_b, data, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    tb = time.perf_counter() - t0
    batched_per_s = len(rows_b) / tb * (args.epochs / 50)

    cfg_s = SweepConfig(**base, epochs=args.single_epochs, engine="single",
                        method_params={"prune_steps": max(1, round(200 * args.single_epochs / 50))})
    runs_s = grid_runs(cfg_s, data, args.single_runs)
    t0 = time.perf_counter()
    for run in runs_s:
        run_chunk(cfg_s, [run], data, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ts = time.perf_counter() - t0
    single_per_s = len(runs_s) / ts * (args.single_epochs / 50)

    ratio = batched_per_s / single_per_s
    reached = sum(r["train_acc"] >= 0.95 for r in rows_b)
    print(f"device {device} ({torch.get_num_threads()} torch threads), load average at start {load:.2f}")
    print(f"{'engine':<10}{'runs':>6}{'epochs/run':>12}{'wall s':>10}{'50-epoch runs/s':>18}")
    print(f"{'batched':<10}{len(rows_b):>6}{args.epochs:>12}{tb:>10.1f}{batched_per_s:>18.3f}")
    print(f"{'single':<10}{len(runs_s):>6}{args.single_epochs:>12}{ts:>10.1f}{single_per_s:>18.4f}"
          f"   (scaled x{args.single_epochs}/50)")
    print(f"batched runs reaching 95% train accuracy: {reached}/{len(rows_b)}")
    print(f"RESULT batched_per_s={batched_per_s:.4f} single_per_s={single_per_s:.4f} ratio={ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
