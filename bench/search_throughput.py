"""Throughput of the search engine: 50-epoch mask trainings per second on the full Cubist Spiral.

Workload (Zhang & Papyan 2024, §3 of ALGORITHMS.md), the search's real one: (2, 3, 3, 3, 1)
masks drawn uniformly from the orbit enumeration of ``search.enumerate``, each trained at all six
points of the paper's search grid (lr in {0.05, 0.1} x the three schedules), every run from its
own random init (:func:`search.phases.search_init_seed`), seed index 0 (one data order),
49,982 points, batch 128, 390 steps per epoch.

Measured in one run on this machine:

- the engine (:func:`search.engine.train_masks`) on all cores, full 50-epoch trainings, wall
  clock including data order, init and final evaluation, with and without the exact early exit
  (the rows must agree; the benchmark checks it), ``--repeats`` times each, alternating, the
  fastest of each counting (this machine's speed drifts by 10-30% within minutes);
- the reference trainer (:func:`cubist.train.train_reference`) one model at a time in as many
  processes as cores (``torch.set_num_threads(1)`` each); every process times ``--ref-runs``
  runs of ``--ref-epochs`` epochs after a warm-up, its fastest run's time per epoch scaled to 50
  epochs;
- the machine's fp32 matmul peak: the best of torch and numpy sgemm on all cores;
- the engine's useful FLOPs: 2 per multiply-add of a nonzero weight and a sample, forward (every
  weight), weight gradients (every weight) and input deltas (weights whose input is a hidden
  unit), plus the final evaluation's forward pass; bias, activation, loss and SGD-update work is
  not counted.

The machine may be shared: the load average is printed before and after, and the engine's
throughput per CPU-second shows what an idle machine would give. The last line is
``RESULT engine_per_s=... reference_per_s=... ratio=... peak_fraction=... early_exit_speedup=...``
(``engine_per_s`` and ``ratio`` with early exit, as the search runs), then ``simd=`` (the engine's
vector width, :mod:`search.simd`) and, when it is 512-bit, ``simd_speedup=``: the same early-exit
run at LLVM's default width (``CUBIST_SIMD=256``, a child process) over this one's.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WIDTHS = (2, 3, 3, 3, 1)
GRID = [(lr, s) for lr in (0.05, 0.1) for s in ("cosine", "step", "constant")]


def sample_masks(n: int, rng) -> tuple[list[np.ndarray], str]:
    """n masks (per layer (n, out, in)) and a description of where they come from."""
    try:
        from search.enumerate import iter_mask_batches
    except ImportError:
        iter_mask_batches = None
    if iter_mask_batches is not None:
        batches = [m for _, m in iter_mask_batches(WIDTHS, symmetry="orbits", batch_size=1 << 16)]
        pool = [np.concatenate([b[l] for b in batches]) for l in range(len(WIDTHS) - 1)]
        total = len(pool[0])
        idx = rng.choice(total, n, replace=n > total)
        return [p[idx] for p in pool], f"uniform over the {total:,} orbit masks of search.enumerate"
    out = []
    for l in range(len(WIDTHS) - 1):
        shape = (WIDTHS[l + 1], WIDTHS[l])
        if l == len(WIDTHS) - 2:
            out.append(np.ones((n,) + shape, bool))
            continue
        m = rng.random((n,) + shape) < 0.5
        for r in range(n):
            while not (m[r].any(0).all() and m[r].any(1).all()):
                m[r] = rng.random(shape) < 0.5
        out.append(m)
    return out, "random eligible masks (search.enumerate not available), density 0.5"


def useful_flops(masks, epochs_run, steps: int, batch: int, n_eval: int) -> float:
    """Multiply-adds (x2) of nonzero weights: see the module docstring."""
    nnz = sum(m.sum(axis=(1, 2)) for m in masks).astype(np.float64)
    nnz_hidden_in = sum(m.sum(axis=(1, 2)) for m in masks[1:]).astype(np.float64)
    per_step = 2 * batch * (2 * nnz + nnz_hidden_in)
    return float((per_step * steps * epochs_run).sum() + (2 * nnz * n_eval).sum())


def sgemm_peak(threads: int, size: int = 3072, reps: int = 4) -> tuple[float, str]:
    """Best fp32 matmul GFLOP/s of torch and numpy on ``threads`` cores."""
    import torch
    torch.set_num_threads(threads)
    best = {}
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for name, f in (("torch", lambda: ta @ tb), ("numpy", lambda: a @ b)):
        f()
        t = min(_timed(f) for _ in range(reps))
        best[name] = 2 * size ** 3 / t / 1e9
    name = max(best, key=best.get)
    return best[name], ", ".join(f"{k} {v:.0f}" for k, v in best.items())


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _reference_worker(masks, hps, epochs: int) -> float:
    """Seconds per epoch of train_reference, one thread, after a one-epoch warm-up: the fastest of
    the runs (as the engine's figure is its fastest measurement)."""
    import torch
    torch.set_num_threads(1)
    from cubist.model import MaskedMLP
    from cubist.spiral import make_spiral
    from cubist.train import TrainConfig, train_reference
    X, y = make_spiral()
    lr, schedule, init_seed = hps[0]
    train_reference(MaskedMLP(WIDTHS, masks[0], seed=init_seed), X, y,
                    TrainConfig(lr=lr, schedule=schedule, epochs=1, seed=0), device="cpu")
    best = float("inf")
    for m, (lr, schedule, init_seed) in zip(masks, hps):
        t = time.perf_counter()
        train_reference(MaskedMLP(WIDTHS, m, seed=init_seed), X, y,
                        TrainConfig(lr=lr, schedule=schedule, epochs=epochs, seed=0), device="cpu")
        best = min(best, (time.perf_counter() - t) / epochs)
    return best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--masks", type=int, default=250, help="masks, each at the 6 grid points (default 250)")
    ap.add_argument("--epochs", type=int, default=50, help="engine epochs per training (default 50)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="engine threads and reference "
                    "processes (default: all cores)")
    ap.add_argument("--ref-runs", type=int, default=2, help="reference runs per process (default 2)")
    ap.add_argument("--ref-epochs", type=int, default=3, help="epochs per reference run (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the mask sample")
    ap.add_argument("--no-simd-baseline", action="store_true", help="skip the engine at LLVM's default "
                    "vector width (CUBIST_SIMD=256, in a child process) when this one uses 512-bit vectors")
    ap.add_argument("--repeats", type=int, default=3, help="engine measurements per mode, alternating; the "
                    "fastest counts (default 3)")
    ap.add_argument("--engine-only", action="store_true", help=argparse.SUPPRESS)  # the child's part
    args = ap.parse_args(argv)

    from joblib import Parallel, delayed

    from cubist.data import Dataset
    from search.engine import train_masks
    from search.simd import engine_label

    cores = args.threads
    label = engine_label()
    print(f"machine: {os.cpu_count()} cores, using {cores}; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rng = np.random.default_rng(args.seed)
    t = time.perf_counter()
    picked, source = sample_masks(args.masks, rng)
    print(f"masks: {args.masks} (2,3,3,3,1) masks x {len(GRID)} grid points, {source} "
          f"({time.perf_counter() - t:.1f} s)")
    nnz = sum(m.sum(axis=(1, 2)) for m in picked[:3])
    print(f"       W1+W2+W3 nnz: mean {nnz.mean():.1f}, min {nnz.min()}, max {nnz.max()} "
          f"(+3 dense output weights)")
    from cubist.masks import mask_key
    from search.phases import search_init_seed
    masks = [np.repeat(m, len(GRID), axis=0) for m in picked]
    R = len(masks[0])
    lrs = [GRID[r % len(GRID)][0] for r in range(R)]
    schedules = [GRID[r % len(GRID)][1] for r in range(R)]
    seeds = [0] * R
    init_seeds = [search_init_seed(WIDTHS, mask_key([m[r] for m in masks]), lrs[r], schedules[r], 0)
                  for r in range(R)]
    data = Dataset.spiral()
    X, y = data.X, data.y
    steps = len(X) // 128

    # engine: compile (or load the numba cache) on a tiny problem first
    t = time.perf_counter()
    train_masks(X[:256], y[:256], WIDTHS, [m[:2] for m in masks], lrs=0.1, schedules="cosine", seeds=0,
                epochs=1, threads=cores)
    print(f"engine ({label}): compiled / loaded from cache in {time.perf_counter() - t:.1f} s")
    timed, runs = {}, []
    modes = (True,) if args.engine_only else (False, True)
    for _ in range(args.repeats):  # alternating, the best of each kept: the machine's speed drifts
        for early_exit in modes:
            t, c = time.perf_counter(), time.process_time()
            res = train_masks(X, y, WIDTHS, masks, lrs=lrs, schedules=schedules, seeds=seeds, epochs=args.epochs,
                              threads=cores, init_seeds=init_seeds, early_exit=early_exit,
                              X_heldout=data.X_heldout, y_heldout=data.y_heldout)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            runs.append(res)
            if early_exit not in timed or wall < timed[early_exit][0]:
                timed[early_exit] = (wall, cpu, res)
            exited = res.exit_epoch > 0
            print(f"engine, early exit {'on ' if early_exit else 'off'}: {R} trainings x {args.epochs} epochs in "
                  f"{wall:.1f} s wall, {cpu:.1f} s CPU ({res.diverged.sum()} diverged, mean train acc "
                  f"{res.train_acc.mean():.3f}, {(res.train_acc >= 0.95).sum()} at >= 95%, "
                  f"{(res.train_acc == 0.5).sum()} at exactly 0.5"
                  + (f", {exited.sum()} exited, mean exit epoch {res.exit_epoch[exited].mean():.1f})" if early_exit
                     else ")"), flush=True)
    if args.engine_only:
        print(f"ENGINE wall={timed[True][0]:.6f} label={label}")
        return
    same = all(np.array_equal(getattr(runs[0], f), getattr(r, f)) for r in runs[1:]
               for f in ("train_acc", "heldout_acc", "diverged"))
    print(f"early exit on and off ({len(runs)} engine calls, each training all {R} runs): identical train/held-out "
          f"accuracy and divergence for every run in every call: {same}; the best of {args.repeats} of each "
          "counts below")
    wall, cpu, res = timed[True]
    early_exit_speedup = timed[False][0] / wall
    scale = args.epochs / 50
    engine_per_s = R * scale / wall
    flops = useful_flops(masks, res.epochs_run, steps, 128, len(X))
    load_mid = os.getloadavg()

    # reference: one model at a time per process, as many processes as cores
    ref_masks = [[m[r] for m in masks] for r in range(cores * args.ref_runs)]
    ref_hps = [(lrs[r], schedules[r], init_seeds[r]) for r in range(cores * args.ref_runs)]
    t = time.perf_counter()
    per_epoch = Parallel(n_jobs=cores)(
        delayed(_reference_worker)(ref_masks[p::cores], ref_hps[p::cores], args.ref_epochs) for p in range(cores))
    ref_wall = time.perf_counter() - t
    reference_per_s = sum(1 / (50 * s) for s in per_epoch)
    print(f"reference: {cores} processes x {args.ref_runs} runs x {args.ref_epochs} epochs in {ref_wall:.1f} s "
          f"(incl. start-up); {np.mean(per_epoch):.3f} s per epoch per process = "
          f"{1e6 * np.mean(per_epoch) / steps:.0f} us per step, scaled to 50 epochs")

    simd_speedup = None
    if label.startswith("numba-avx512/") and not args.no_simd_baseline:
        import subprocess
        cmd = [sys.executable, __file__, "--engine-only", "--masks", str(args.masks), "--epochs", str(args.epochs),
               "--threads", str(cores), "--seed", str(args.seed), "--repeats", str(args.repeats)]
        child = subprocess.run(cmd, env={**os.environ, "CUBIST_SIMD": "256"}, capture_output=True, text=True)
        line = [x for x in child.stdout.splitlines() if x.startswith("ENGINE ")]
        if child.returncode == 0 and line:
            wall256 = float(line[0].split()[1].split("=")[1])
            simd_speedup = wall256 / wall
            print(f"engine, early exit on, LLVM's default vector width (CUBIST_SIMD=256, a child process): "
                  f"{R * scale / wall256:.2f} trainings/s; 512-bit vectors: {engine_per_s:.2f}/s "
                  f"({simd_speedup:.2f}x)")
        else:
            print(f"engine at CUBIST_SIMD=256: the child process failed ({child.stderr.strip()[-300:]})")

    peak, detail = sgemm_peak(cores)
    gflops = flops / wall / 1e9
    load_after = os.getloadavg()
    print()
    print(f"{'':28}{'engine':>14}{'reference':>14}")
    print(f"{'50-epoch trainings / s':28}{engine_per_s:14.2f}{reference_per_s:14.3f}")
    print(f"{'s per training per core':28}{cores * wall / (R * scale):14.4f}{np.mean(per_epoch) * 50:14.2f}")
    print(f"{'trainings / CPU-second':28}{R * scale / cpu:14.2f}{'':>14}")
    print(f"ratio engine / reference: {engine_per_s / reference_per_s:.0f}x; early exit: "
          f"{early_exit_speedup:.2f}x ({timed[False][0]:.1f} s off, {wall:.1f} s on)")
    print(f"engine useful GFLOP/s: {gflops:.1f}; fp32 sgemm peak on {cores} cores: {peak:.0f} GFLOP/s "
          f"({detail}); fraction {gflops / peak:.3f}")
    print(f"load average during engine: {load_mid[0]:.2f}, after: {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"RESULT engine_per_s={engine_per_s:.2f} reference_per_s={reference_per_s:.4f} "
          f"ratio={engine_per_s / reference_per_s:.1f} peak_fraction={gflops / peak:.4f} "
          f"early_exit_speedup={early_exit_speedup:.3f} simd={label}"
          + (f" simd_speedup={simd_speedup:.3f}" if simd_speedup is not None else ""))


if __name__ == "__main__":
    main()
