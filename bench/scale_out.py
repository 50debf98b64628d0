"""Scale-out of the phase-2 search: loky with 1 and 2 workers, and a local Dask cluster of 2 workers.

Workload (Zhang & Papyan 2024, §3 of ALGORITHMS.md): the search of :func:`search.phases.search_masks`
for hidden widths ``--widths`` (default 3,3,3) on the full Cubist Spiral, every orbit mask of the
nnz levels up to ``--max-nnz`` (default 16: the 2,134 masks of levels 12-16), at ``--lrs`` x
``--schedules`` x ``--seeds`` inits (default 0.1, cosine, 1), ``--epochs`` epochs (default 50, the paper's), in
chunks of ``--chunk-size`` (default 64) models: the
library call the command line makes, each level a barrier as in a real search.

Each configuration runs in a process of its own (``--one``), so each starts cold and alike:

- ``loky1``: ``jobs=1`` (the search in the driver) with one numba thread (``NUMBA_NUM_THREADS=1``);
- ``loky2``: 2 loky worker processes of one thread (``joblib.parallel_config("loky",
  inner_max_num_threads=1)``, as ``--jobs 2``);
- ``dask2``: a ``distributed.LocalCluster`` of 2 worker processes x 1 thread, one numba thread
  each (``NUMBA_NUM_THREADS=1``; as ``--backend dask`` without ``--scheduler``).

A warm-up first starts the workers and loads numba's cache (levels up to the sparsest one, one
epoch, chunks of 1 model, into a store of its own); then the slice is timed from the call to its
return into a fresh store. Throughput is runs per second of wall clock; parallel efficiency is
``throughput / (workers x loky1 throughput)``, every configuration run ``--repeats`` times in turn
and the fastest counting (this machine's speed drifts by 10-30% within minutes); "training s" sums the chunks' own training time
(the rows' ``wall_time_s``) and "busy" divides it by workers x wall clock (1.0: no time lost to
dispatch, transfers or level barriers; a slower chunk on a loaded machine shows in training s, not
in busy). The stores are compared afterwards: the same run
ids, accuracies, losses and weights in every configuration. The machine may be shared: the load
average is printed. The last line is ``RESULT loky1_per_s=... loky2_per_s=... dask2_per_s=...
loky2_efficiency=... dask2_efficiency=... rows_identical=...``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {"loky1": 1, "loky2": 2, "dask2": 2}   # name -> workers


def _slice_args(args):
    from search.phases import Grid
    grid = Grid(lrs=tuple(args.lrs), schedules=tuple(args.schedules), seeds=args.seeds, epochs=args.epochs)
    return tuple(args.widths), grid


def run_one(name: str, args, out: str) -> dict:
    """The warm-up and the timed slice of one configuration (in this process)."""
    import contextlib

    from joblib import parallel_config

    import cubist
    from cubist.data import Dataset
    from search.enumerate import count_masks
    from search.phases import Grid, search_masks
    hidden, grid = _slice_args(args)
    data = Dataset.spiral()
    jobs = CONFIGS[name]
    with contextlib.ExitStack() as stack:
        if name.startswith("dask"):
            import distributed

            from cubist.dispatch import local_dask_cluster
            cluster = stack.enter_context(local_dask_cluster(jobs))
            client = stack.enter_context(distributed.Client(cluster))
            stack.enter_context(parallel_config(backend="dask", client=client))
        else:
            stack.enter_context(parallel_config(backend="loky", inner_max_num_threads=1))
        sparsest = min(count_masks((data.X.shape[1], *hidden, 1)))
        t = time.perf_counter()
        search_masks(hidden, 0.99, Grid(lrs=grid.lrs[:1], schedules=grid.schedules[:1], seeds=jobs, epochs=1),
                     store=cubist.ResultStore(out + "-warmup"), data=data, max_nnz=sparsest, chunk_size=1,
                     jobs=jobs, quiet=True, log=lambda *a: None)
        warm = time.perf_counter() - t
        load = os.getloadavg()[0]
        t = time.perf_counter()
        res = search_masks(hidden, 0.99, grid, store=cubist.ResultStore(out), data=data, max_nnz=args.max_nnz,
                           chunk_size=args.chunk_size, jobs=jobs, quiet=True, log=lambda *a: None)
        wall = time.perf_counter() - t
    busy = float(cubist.ResultStore(out).load(["wall_time_s"])["wall_time_s"].sum())
    return {"name": name, "workers": jobs, "runs": res.trained, "wall_s": wall, "busy_s": busy, "warmup_s": warm,
            "load_before": load, "load_after": os.getloadavg()[0]}


def _rows(path):
    import cubist
    df = cubist.ResultStore(path).load(["train_acc", "final_loss", "weights"])
    return {r["run_id"]: (r["train_acc"], r["final_loss"], r["weights"]) for r in df.to_dict("records")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    csv = lambda kind: (lambda t: [kind(v) for v in t.split(",")])  # noqa: E731
    ap.add_argument("--widths", type=csv(int), default=[3, 3, 3], help="hidden widths (default 3,3,3)")
    ap.add_argument("--max-nnz", type=int, default=16, help="train every level up to this nnz (default 16)")
    ap.add_argument("--lrs", type=csv(float), default=[0.1], help="learning rates (default 0.1)")
    ap.add_argument("--schedules", type=csv(str), default=["cosine"], help="schedules (default cosine)")
    ap.add_argument("--seeds", type=int, default=1, help="inits per mask and grid point (default 1)")
    ap.add_argument("--epochs", type=int, default=50, help="epochs per run (default 50, the paper's)")
    ap.add_argument("--chunk-size", type=int, default=64, help="models per chunk (default 64)")
    ap.add_argument("--configs", type=csv(str), default=list(CONFIGS), help="which of loky1,loky2,dask2")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each configuration, in turn; the fastest "
                    "counts (default 3)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:   # a child: one configuration, its figures as JSON on the last line
        print(json.dumps(run_one(args.one, args, args.out)))
        return

    print(f"machine: {os.cpu_count()} cores; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"slice: widths {','.join(map(str, args.widths))}, levels up to nnz {args.max_nnz}, lrs {args.lrs}, "
          f"schedules {args.schedules}, {args.seeds} seeds, {args.epochs} epochs, chunks of {args.chunk_size}")
    child_argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    figures, stores = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):   # the configurations in turn, each repeat: the machine's speed drifts
            for name in args.configs:
                env = dict(os.environ)
                if name == "loky1":
                    env["NUMBA_NUM_THREADS"] = "1"   # the driver trains alone, on one thread like a worker
                out = os.path.join(tmp, f"{name}-{rep}")
                p = subprocess.run([sys.executable, __file__, *child_argv, "--one", name, "--out", out], env=env,
                                   capture_output=True, text=True)
                if p.returncode != 0:
                    sys.exit(f"{name} failed:\n{p.stderr[-3000:]}")
                f = json.loads(p.stdout.strip().splitlines()[-1])
                stores.append(out)
                print(f"{name}: {f['runs']} runs in {f['wall_s']:.1f} s (warm-up {f['warmup_s']:.1f} s; load "
                      f"{f['load_before']:.2f} -> {f['load_after']:.2f})", flush=True)
                if name not in figures or f["wall_s"] < figures[name]["wall_s"]:
                    figures[name] = f
        rows = {os.path.basename(d): _rows(d) for d in stores}
    print(f"the fastest of {args.repeats} of each configuration counts below")
    first = next(iter(rows.values()))
    identical = all(r == first for r in rows.values())

    base = figures.get("loky1")
    print()
    print(f"{'':10}{'workers':>9}{'runs':>7}{'wall s':>9}{'runs/s':>9}{'speedup':>9}{'efficiency':>12}"
          f"{'training s':>12}{'busy':>7}")
    per_s, eff = {}, {}
    for name, f in figures.items():
        per_s[name] = f["runs"] / f["wall_s"]
        speed = per_s[name] / (base["runs"] / base["wall_s"]) if base else float("nan")
        eff[name] = speed / f["workers"]
        print(f"{name:10}{f['workers']:9d}{f['runs']:7d}{f['wall_s']:9.1f}{per_s[name]:9.2f}{speed:9.2f}"
              f"{eff[name]:12.2f}{f['busy_s']:12.1f}{f['busy_s'] / (f['workers'] * f['wall_s']):7.2f}")
    print(f"rows identical across configurations (run ids, train_acc, final_loss, weights): {identical}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("RESULT " + " ".join([f"{n}_per_s={per_s[n]:.3f}" for n in figures]
                               + [f"{n}_efficiency={eff[n]:.3f}" for n in figures if n != "loky1"]
                               + [f"rows_identical={identical}"]))


if __name__ == "__main__":
    main()
