"""``cubist prune``: a pruning sweep on the Cubist Spiral, R runs trained as one batched model.

Every nnz x lr x schedule x seed combination is one run (Zhang & Papyan 2024's protocol); rows
go to the result store (``--out``) as chunks finish; rerunning skips stored runs. On CPU,
``--jobs N`` runs chunks in N worker processes with one torch thread each (tiny batched
matmuls gain little from threads, and oversubscribed threads are much slower); on CUDA one
process drives the GPU. ``--backend dask|ray`` (``--scheduler ADDRESS``) sends the same chunks
to a cluster's CPUs; this process still writes every row. ``--init-checkpoint FILE``: every
run starts from the width-W slice of that one saved width-16 init (the paper's fixed-init
experiments; ``cubist search best-init``), the seed index repeats over the data order. Method
hyper-parameters are flags generated from the methods' config dataclasses; a flag the chosen
method does not take is an error.
"""
from __future__ import annotations

import dataclasses

from .common import (MAX_SEEDS, add_common, add_target, check_at_most, check_store_dir, check_widths_arg,
                     command_help, config_flags, config_from_args, csv, CubistError, given_fields, positive_int,
                     sweep_backend, add_method_flags)


def add_parser(sub) -> None:
    from cubist.data import DATASETS
    from pruners import load_methods
    from pruners.runner import SweepConfig
    methods = sorted(load_methods())
    fields = SweepConfig.__dataclass_fields__
    p = sub.add_parser(
        "prune", help=command_help("prune"),
        description="Prune MLPs on a data set of the registry (default the Cubist Spiral) to exact weight counts with one method over every "
                    "nnz x lr x schedule x seed, R runs trained at once as one batched model. "
                    "Method flags default to the method's own defaults.")
    p.add_argument("--method", required=True, choices=methods, help=fields["method"].metadata["help"])
    hidden = fields["widths"].default[1:-1]
    g = p.add_mutually_exclusive_group()
    g.add_argument("--width", type=positive_int, default=None,
                   help=f"hidden width of the {len(hidden)} hidden layers (default {hidden[0]})")
    g.add_argument("--widths", type=csv(int, minimum=1), default=None, metavar="D1,D2,D3",
                   help="hidden widths, e.g. 3,3,3 (input 2 and one output are implied)")
    config_flags(p, SweepConfig, choices={"data": tuple(DATASETS)})
    p.add_argument("--init-checkpoint", metavar="FILE", help=fields["init_checkpoint"].metadata["help"])
    add_target(p, text="train accuracy the closing line counts runs reaching (not stored)")
    add_common(p)
    add_method_flags(p)
    p.set_defaults(func=_run)


def sweep_config_from_args(args):
    """The :class:`~pruners.runner.SweepConfig` described by parsed ``cubist prune`` flags."""
    from pruners import get_method
    from pruners.runner import SweepConfig
    cls = get_method(args.method)
    params = given_fields(args, "m_", {f.name for f in dataclasses.fields(cls.Config)}, f"method {args.method}")
    widths = SweepConfig.__dataclass_fields__["widths"].default
    if args.widths is not None:
        widths = (widths[0], *args.widths, widths[-1])
    elif args.width is not None:
        widths = (widths[0], *(args.width,) * (len(widths) - 2), widths[-1])
    return config_from_args(SweepConfig, args, method=args.method, widths=widths, method_params=params,
                            device=args.device, init_checkpoint=args.init_checkpoint)


def _run(args) -> int:
    import os

    import numpy as np

    from cubist.stats import reached_target
    from cubist.store import ResultStore

    from pruners.runner import build_runs, load_data, run_sweep
    check_at_most(args.seeds, MAX_SEEDS, "--seeds")
    if args.width is not None:
        check_widths_arg([args.width], "--width")
    if args.widths is not None:
        check_widths_arg(args.widths)
    cfg = sweep_config_from_args(args)
    check_store_dir(args.out)
    if args.backend != "loky" and args.device == "cuda":
        raise CubistError(f"--backend {args.backend} trains on the workers' CPUs; use --device auto or cpu")
    store = ResultStore(args.out)
    total = len(build_runs(cfg, load_data(cfg)))
    done_before = len(store.done()) if os.path.isdir(args.out) else 0
    with sweep_backend(args) as jobs:
        rows = run_sweep(cfg, store=store, progress=not args.quiet, threads=1, jobs=jobs)
    skipped = total - len(rows)   # the summary also with --quiet, which only hides the progress bar
    reached = int(reached_target([np.nan if r["train_acc"] is None else r["train_acc"] for r in rows],
                                 [r["diverged"] for r in rows], args.target).sum())
    print(f"prune {cfg.method}: {len(rows)} runs done, {skipped} already stored"
          f" ({done_before} rows in {args.out} before); {reached} reached {args.target:g} train accuracy")
    return 0
