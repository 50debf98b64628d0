"""Throughput of the batched pruner engine by hidden width (3..256): 50-epoch runs per second.

For each width ``W`` (equal hidden widths, ``cubist prune --width W``; the over-parameterisation
matrix of ``results/run_overparam.sh``) and each method (default ``gmp`` and ``lrr --cycles 5``,
the sparsest paper's imp_LTH protocol: 5 rounds + a last training run = 6 training runs), one
chunk of ``R`` runs (the width's budgets x the paper's grid, cycled over seeds) is trained as one
:class:`pruners.layers.BatchedMLP` on the full Cubist Spiral through :func:`pruners.runner.run_chunk`
(init, pruning, training, final evaluation on both sets, the rows), one process, one torch thread.

Runs are short (``--gmp-epochs``, default 2, GMP's 200 events scaled along as in
``bench/prune_throughput.py``; ``--lrr-epochs``, default 1 per training run, so 6 epochs): a
timestamp after every epoch gives the cost of one epoch (the mean interval; LRR's intervals
include its prunes and rewinds) and the fixed cost (everything else: init, data order, the final
evaluation, building rows). A 50-epoch run is then ``fixed + per_epoch x E`` with ``E`` the
epochs a 50-epoch run trains (50 for GMP, 300 for LRR with 5 cycles), so the short runs are
scaled without charging the fixed cost 50 times. Both wall time (what this shared machine gave)
and process CPU time (what one dedicated core gives; the sweep's ``--jobs 2`` uses two) are
reported. ``R`` per width: ``--replicas`` (default ``max(2, min(32, 512 // W))``, small at the
large widths to keep the default run to a few minutes); the sweep's chunks
(``results/overparam.py``: at most ``2**21 / W**2`` replicas, 8 MiB per weight tensor) are
larger, and per-replica cost depends on ``R`` (``--replicas 32`` times a fixed ``R``).

Prints the load average before and after (the machine is shared), a table width x method and
``RESULT gmp_per_s=W:rate,... lrr_per_s=W:rate,...`` (wall-time rates, 50-epoch runs per second).
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
from pruners.runner import SweepConfig, build_runs, load_data, run_chunk  # noqa: E402

WIDTHS = (3, 4, 5, 6, 7, 8, 16, 32, 64, 128, 256)
BUDGETS = (*range(15, 27), 30, 33, 37, 40, 44, 50, 53, 55, 57, 60, 65)
LRS = (0.05, 0.1, 0.2)
SCHEDULES = ("cosine", "step", "constant")
METHODS = {"gmp": {}, "lrr": {"cycles": 5}}


def default_replicas(width: int) -> int:
    return max(2, min(32, 512 // width))


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def time_chunk(width: int, method: str, replicas: int, epochs: int, data=None):
    """Train one chunk of ``replicas`` short runs; returns a dict of timings and rates."""
    widths = (2, width, width, width, 1)
    nnz = tuple(f for f in BUDGETS if f < dense_weight_count(widths))
    params = dict(METHODS[method])
    if method == "gmp":
        params["prune_steps"] = max(1, round(200 * epochs / 50))
    seeds = -(-replicas // (len(nnz) * len(LRS) * len(SCHEDULES)))
    cfg = SweepConfig(method=method, widths=widths, nnz=nnz, lrs=LRS, schedules=SCHEDULES, seeds=max(1, seeds),
                      epochs=epochs, method_params=params, chunk=replicas, device="cpu")
    data = data if data is not None else load_data(cfg)
    runs = list(itertools.islice(build_runs(cfg, data), replicas))
    stamps = []
    t0, c0 = time.perf_counter(), time.process_time()
    run_chunk(cfg, runs, data, torch.device("cpu"), on_epoch=lambda _n: stamps.append(
        (time.perf_counter(), time.process_time())))
    t1, c1 = time.perf_counter(), time.process_time()
    mcfg = cfg.method_config()
    timed = len(stamps)
    full = mcfg.total_epochs(50, cfg.layer_weights(), runs[0].target)
    out = {"width": width, "weights": dense_weight_count(widths), "method": method, "R": len(runs),
           "epochs": timed, "wall": t1 - t0, "cpu": c1 - c0, "full_epochs": full}
    for key, k, start, end in (("wall", 0, t0, t1), ("cpu", 1, c0, c1)):
        per_epoch = (stamps[-1][k] - stamps[0][k]) / (timed - 1)
        fixed = max(0.0, (end - start) - per_epoch * timed)
        out[f"{key}_epoch"], out[f"{key}_fixed"] = per_epoch, fixed
        out[f"{key}_per_s"] = len(runs) / (fixed + per_epoch * full)
    return out, data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", default=",".join(map(str, WIDTHS)), help="hidden widths (comma list)")
    p.add_argument("--methods", default="gmp,lrr", help="gmp and/or lrr (lrr with --cycles 5)")
    p.add_argument("--replicas", type=int, default=0, help="runs per chunk (0: max(2, min(32, 512 // W)))")
    p.add_argument("--gmp-epochs", type=int, default=2, help="epochs of each timed GMP run (>= 2)")
    p.add_argument("--lrr-epochs", type=int, default=1, help="epochs of each of LRR's 6 training runs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the sweep's workers use 1)")
    args = p.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    methods = args.methods.split(",")
    if any(m not in METHODS for m in methods) or args.gmp_epochs < 2 or args.lrr_epochs < 1:
        p.error("methods are gmp and lrr; --gmp-epochs >= 2, --lrr-epochs >= 1")
    torch.set_num_threads(args.threads)
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"load average before: {load_average()}; {torch.get_num_threads()} torch thread(s), "
          f"malloc env: {malloc or 'default'}", flush=True)
    results, data = [], None
    head = (f"{'width':>5}{'weights':>9}{'method':>7}{'R':>5}{'epochs':>7}{'wall s':>8}{'epoch s':>9}"
            f"{'fixed s':>9}{'runs/s wall':>13}{'runs/s CPU':>12}{'s/run CPU':>11}")
    print(head, flush=True)
    for w in widths:
        for m in methods:
            r, data = time_chunk(w, m, args.replicas or default_replicas(w),
                                 args.gmp_epochs if m == "gmp" else args.lrr_epochs, data)
            results.append(r)
            print(f"{w:>5}{r['weights']:>9}{m:>7}{r['R']:>5}{r['epochs']:>7}{r['wall']:>8.1f}"
                  f"{r['wall_epoch']:>9.3f}{r['wall_fixed']:>9.2f}{r['wall_per_s']:>13.4f}{r['cpu_per_s']:>12.4f}"
                  f"{1 / r['cpu_per_s']:>11.2f}", flush=True)
    print("runs/s: 50-epoch runs (GMP 50 epochs, LRR 6 x 50) per second of one process, one thread; "
          "epoch s and fixed s: wall")
    print(f"load average after: {load_average()}")
    parts = []
    for m in methods:
        parts.append(f"{m}_per_s=" + ",".join(f"{r['width']}:{r['wall_per_s']:.4g}" for r in results
                                              if r["method"] == m))
    print("RESULT " + " ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
