"""``cubist search``: phase 1 (``widths``), phase 2 (``masks``), ``enumerate``, ``retrain``, ``init``
and ``best-init`` (the init of the best phase-1 run, for the fixed-init experiments)."""
from __future__ import annotations

import argparse

from .common import (MAX_RUNS, MAX_SEEDS, MAX_WIDTH, accuracy, add_common, add_target, check_at_most,
                     check_store_dir, check_widths_arg, check_writable_file, command_help, config_flags,
                     config_from_args, csv, CubistError, default_of, field_argument, number, positive_int,
                     sweep_backend)


def _widths(text: str):
    return tuple(csv(int, minimum=1)(text))


def _add_grid(p, **defaults):
    """``--target`` and the flags of :class:`search.phases.Grid` (its fields, its defaults)."""
    from search.phases import Grid
    add_target(p)
    config_flags(p, Grid, defaults=defaults)


def add_parser(sub):
    from search import phases
    from search.enumerate import count_masks
    p = sub.add_parser("search", help=command_help("search"),
                       description="The paper's combinatorial search with the numba engine.")
    ss = p.add_subparsers(dest="search_command", metavar="PHASE", required=True, parser_class=type(p))

    w = ss.add_parser("widths", help="phase 1: every dense sub-architecture")
    for name, text in (("max_width", "largest hidden width"), ("min_width", "smallest hidden width"),
                       ("depth", "hidden layers")):
        default = default_of(phases.search_widths, name)
        w.add_argument("--" + name.replace("_", "-"), type=positive_int, default=default, help=f"{text} (default {default})")
    w.add_argument("--init-checkpoint", metavar="FILE",
                   help="one saved width-16 init for every run (see 'cubist search best-init'); the seed index "
                        "gives the data order only")
    w.add_argument("--fewer-params-than", type=_widths, metavar="D1,D2,D3",
                   help="only the architectures with fewer parameters (weights and biases) than the dense network "
                        "of these hidden widths (the paper's fixed-init phase 1: 3,3,3 at 95%%, 37 parameters)")
    _add_sweep(w, _run_widths)

    m = ss.add_parser("masks", help="phase 2: every mask of given widths, sparsest first")
    m.add_argument("--widths", type=_widths, required=True, help="hidden widths, e.g. 3,3,3")
    m.add_argument("--symmetry", choices=["orbits", "labelled"], default=None,
                   help="one mask per hidden-unit symmetry orbit, or every labelled mask "
                        "(default orbits; labelled with --init-checkpoint)")
    m.add_argument("--init-checkpoint", metavar="FILE", help="a saved width-16 init (see 'cubist search init')")
    stop = m.add_mutually_exclusive_group()
    stop.add_argument("--exhaustive", action="store_true", help="train every nnz level")
    stop.add_argument("--max-nnz", type=positive_int, help="train every level up to this total weight nnz")
    chunk = default_of(phases.search_masks, "chunk_size")
    m.add_argument("--chunk-size", type=positive_int, default=chunk, help=f"models per engine call (default {chunk})")
    inits = phases.Adaptive.__dataclass_fields__["inits"]
    flag, kw = field_argument(inits, unset=True, suffix=" (the last is --seeds; default: no adaptive rounds, every "
                                                        "mask gets --seeds inits; e.g. 1,3,10)")
    m.add_argument(flag, **{**kw, "dest": "adaptive_inits", "metavar": "K0,K1,..."})
    config_flags(m, phases.Adaptive, only=("keep",))
    m.add_argument("--min-rate", type=accuracy, metavar="Q",
                   help="also find the sparsest nnz with a mask reaching the target in a share >= Q of its inits "
                        "(at its best grid point); the search goes on until it is found")
    _add_sweep(m, _run_masks)

    e = ss.add_parser("enumerate", help="write the masks of given widths and count them per nnz level")
    e.add_argument("--widths", type=_widths, required=True, help="all widths, e.g. 2,3,3,3,1")
    e.add_argument("--symmetry", choices=["orbits", "labelled"], default=default_of(count_masks, "symmetry"))
    e.add_argument("--out", metavar="FILE", help="Parquet file of masks (default: only count)")
    e.set_defaults(func=_run_enumerate)

    r = ss.add_parser("retrain", help="train the mask of stored runs from the initialisation (is the mask enough?)",
                      description="Train the mask of each given run from the initialisation on a grid, as the "
                                  "search trains masks, and compare with the run's own accuracy: a pruned "
                                  "network that beats the search by its weights, not its mask, shows here.")
    r.add_argument("results", nargs="+", metavar="RESULTS", help="result store directories")
    r.add_argument("--run-id", type=csv(), required=True, metavar="ID[,ID...]",
                   help="runs whose masks to retrain (unique prefixes are enough)")
    r.add_argument("--details", action="store_true", help="print every grid point, not only the summary")
    from pruners.runner import SweepConfig
    _add_grid(r, lrs=SweepConfig.__dataclass_fields__["lrs"].default)   # the pruning grid's learning rates
    r.add_argument("--init-checkpoint", metavar="FILE",
                   help="train every run from this saved init instead of fresh ones (as the fixed-init search does)")
    r.add_argument("--out", metavar="DIR", default=None,
                   help="also keep the runs in this result store (kind search_retrain: read by the audit's "
                        "mask-or-weights column, counted by no search table; stored runs are not trained again). "
                        "Default: print only")
    add_common(r, store=False, device=False, jobs=False)
    r.set_defaults(func=_run_retrain)

    b = ss.add_parser("best-init", help="save the width-16 init behind the best phase-1 run of an architecture",
                      description="Find the best phase-1 run of an architecture in a search store ("
                                  + phases.BEST_RUN_RULE + "), redraw the width-16 init it was cut from (from "
                                  "the row's init seed), check that retraining the run from it reproduces the "
                                  "stored row bit for bit, and save it as a checkpoint for --init-checkpoint "
                                  "(written atomically; it records the store, run id and init seed).")
    b.add_argument("--store", required=True, metavar="DIR", help="a search result store with phase-1 runs")
    b.add_argument("--widths", type=_widths, required=True, metavar="D1,D2,D3", help="hidden widths, e.g. 3,3,3")
    b.add_argument("--target", type=accuracy, default=None, metavar="ACC",
                   help="require the best run to reach this train accuracy (default: any)")
    b.add_argument("--out", required=True, metavar="FILE", help="the checkpoint to write")
    b.add_argument("--check", nargs="?", const="exact", default="exact", choices=phases.CHECKS,
                   help="retrain the run from the checkpoint first and require the stored row: 'exact' bit for "
                        "bit (the default; rows are bit for bit only on the CPU model that made them), 'close' "
                        "within tolerances (the same run retrained on another CPU model), 'off'")
    b.add_argument("--no-check", dest="check", action="store_const", const="off", help="as --check off")
    b.set_defaults(func=_run_best_init)

    i = ss.add_parser("init", help="save a width-16 initialisation for --init-checkpoint")
    i.add_argument("--out", required=True, metavar="FILE")
    seed, widths = default_of(phases.save_init, "seed"), default_of(phases.save_init, "widths")
    i.add_argument("--seed", type=number(int, lambda v: v >= 0, "a seed >= 0"), default=seed,
                   help=f"seed of the init (default {seed})")
    i.add_argument("--widths", type=_widths, default=widths,
                   help=f"all widths (default {','.join(map(str, widths))})")
    i.set_defaults(func=_run_init)


def _add_sweep(p, func):
    """The flags a search phase shares (target, grid, data, store and workers), and its function."""
    _add_grid(p)
    _add_data(p)
    add_common(p)
    p.set_defaults(func=func)


def _add_data(p):
    """``--data NAME`` (a data set of the registry, on its default recipe) and ``--heldout``."""
    from cubist.data import DATASETS, DataConfig
    config_flags(p, DataConfig, choices={"name": tuple(DATASETS)})


def _data(args):
    from cubist.data import DataConfig
    return config_from_args(DataConfig, args).build()


def _grid(args):
    from search.phases import Grid
    seeds = args.seeds
    adaptive = getattr(args, "adaptive_inits", None)
    if adaptive:
        if seeds not in (1, adaptive[-1]):
            raise CubistError(f"--seeds {seeds} disagrees with --adaptive-inits, which ends at {adaptive[-1]}")
        seeds = adaptive[-1]
    return config_from_args(Grid, args, seeds=seeds)


def _adaptive(args):
    from search.phases import Adaptive
    if not args.adaptive_inits:
        return None
    try:
        return Adaptive(tuple(args.adaptive_inits), args.keep)
    except ValueError as e:
        raise CubistError(str(e))


def _check_sweep(args):
    """What a search phase checks before any work: the device and the store."""
    if args.device == "cuda":
        raise CubistError("the search engine runs on the CPU (numba); use --device auto or cpu")
    check_at_most(args.seeds, MAX_SEEDS, "--seeds")
    check_store_dir(args.out)


def _run_widths(args):
    from cubist.store import ResultStore

    from search.phases import FixedInit, dense_param_count, phase1_architectures, search_widths
    grid, data = _grid(args), _data(args)
    _check_sweep(args)
    check_at_most(args.max_width, MAX_WIDTH, "--max-width")
    archs = max(args.max_width - args.min_width + 1, 0) ** args.depth
    check_at_most(archs * len(grid.points()), MAX_RUNS, "--max-width/--depth", " runs")
    if args.min_width > args.max_width:
        raise CubistError(f"need 1 <= min_width <= max_width, got {args.min_width}, {args.max_width}")
    below = None
    if args.fewer_params_than is not None:
        check_widths_arg(args.fewer_params_than, "--fewer-params-than")
        if len(args.fewer_params_than) != args.depth:
            raise CubistError(f"--fewer-params-than {','.join(map(str, args.fewer_params_than))} has "
                              f"{len(args.fewer_params_than)} hidden widths, --depth is {args.depth}")
        below = dense_param_count((data.X.shape[1], *args.fewer_params_than, 1))
        if not phase1_architectures(data.X.shape[1], args.max_width, args.min_width, args.depth, below):
            raise CubistError(f"no architecture of widths {args.min_width}..{args.max_width} has fewer than {below} "
                              f"parameters (--fewer-params-than {','.join(map(str, args.fewer_params_than))})")
    init = FixedInit.load(args.init_checkpoint) if args.init_checkpoint else None
    if init is not None:
        try:
            init.sliced((data.X.shape[1], *(args.max_width,) * args.depth, 1))
        except ValueError as e:
            raise CubistError(f"--init-checkpoint {args.init_checkpoint}: {e} (--max-width {args.max_width}, "
                              f"--depth {args.depth})")
    with sweep_backend(args) as jobs:
        res = search_widths(args.target, grid, store=ResultStore(args.out), data=data, max_width=args.max_width,
                            min_width=args.min_width, depth=args.depth, init=init, params_below=below,
                            jobs=jobs, quiet=args.quiet)
    print(f"trained {res.trained} runs in {res.wall_time_s:.1f} s; results in {args.out}")
    if init is not None:
        print(f"every run from init checkpoint {init.id} ({args.init_checkpoint})")
    if below is not None:
        print(f"architectures with fewer than {below} parameters: "
              f"{len(phase1_architectures(data.X.shape[1], args.max_width, args.min_width, args.depth, below))}")
    print(f"pareto-minimal architectures reaching {args.target:.4g} in some run "
          f"({res.inits} inits per grid point): {res.pareto}")
    for h in res.pareto:
        print(f"  {','.join(map(str, h))}: {res.rates[h].describe()}")
    if res.by_weights:
        from cubist.masks import dense_weight_count
        n = dense_weight_count((2, *res.by_weights[0], 1))
        print(f"fewest weights reaching {args.target:.4g} in some run: "
              + ", ".join(f"{','.join(map(str, h))} ({n} weights; {res.rates[h].describe()})" for h in res.by_weights))
    return 0


def _run_masks(args):
    from cubist.store import ResultStore

    from search.phases import FixedInit, search_masks
    init = FixedInit.load(args.init_checkpoint) if args.init_checkpoint else None
    if init is not None and args.symmetry == "orbits":
        raise CubistError("--symmetry orbits is valid only for independent random inits: under one fixed init "
                          "permuting hidden units changes the init a mask keeps, so every labelled mask is its "
                          "own run (use --symmetry labelled, the default with --init-checkpoint)")
    symmetry = args.symmetry or ("labelled" if init is not None else "orbits")
    grid, adaptive, data = _grid(args), _adaptive(args), _data(args)
    _check_sweep(args)
    check_widths_arg(args.widths)
    if args.max_nnz is not None:
        from search.enumerate import count_masks
        widths = (data.X.shape[1], *args.widths, 1)
        levels = count_masks(widths, symmetry=symmetry)
        if levels and min(levels) > args.max_nnz:
            raise CubistError(f"the sparsest level of widths {','.join(map(str, widths))} has {min(levels)} weights, "
                              f"above --max-nnz {args.max_nnz}: nothing to train")
    with sweep_backend(args) as jobs:
        res = search_masks(args.widths, args.target, grid, store=ResultStore(args.out), data=data,
                           symmetry=symmetry, init=init, exhaustive=args.exhaustive, max_nnz=args.max_nnz,
                           chunk_size=args.chunk_size, jobs=jobs, quiet=args.quiet, adaptive=adaptive,
                           min_rate=args.min_rate)
    print(f"trained {res.trained} runs in {res.wall_time_s:.1f} s; results in {args.out}")
    print(res.summary())
    if res.sparsest_nnz is None:
        return 0
    from search.phases import mask_rates
    at_sparsest = [r for r in res.rows if r["weight_nnz"] == res.sparsest_nnz]
    rates = sorted((r for r in mask_rates(at_sparsest, args.target).values() if r.successes),
                   key=lambda r: (-r.rate, -r.best_acc))
    for r in rates[:10]:
        print(f"  mask {r.key}  best acc {r.best_acc:.4f}  {r.describe()}")
    return 0


def _run_enumerate(args):
    from search.enumerate import count_masks, write_masks_parquet
    if len(args.widths) < 3:
        raise CubistError("--widths needs input, hidden and output sizes, e.g. 2,3,3,3,1")
    if args.out:
        check_writable_file(args.out)
        counts = write_masks_parquet(args.out, args.widths, symmetry=args.symmetry)
    else:
        counts = count_masks(args.widths, symmetry=args.symmetry)
    for nnz in sorted(counts):
        print(f"nnz {nnz:4d}: {counts[nnz]}")
    print(f"total: {sum(counts.values())} {args.symmetry} masks of widths {','.join(map(str, args.widths))}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _run_init(args):
    from cubist.model import check_widths
    from search.phases import save_init
    check_writable_file(args.out)
    check_widths_arg(args.widths)
    try:
        check_widths(args.widths)
    except ValueError as e:
        raise CubistError(f"--widths: {e}")
    save_init(args.out, args.widths, args.seed)
    print(f"wrote {args.out}")
    return 0


def _run_retrain(args):
    from cubist.report.tables import compact_masks, load_results, select_runs
    from cubist.data import DataConfig
    from cubist.stats import reached_target
    from cubist.store import ResultStore, row_masks

    from search.phases import FixedInit, retrain_from_init
    grid = _grid(args)
    if args.out is not None:
        check_store_dir(args.out)
    init = FixedInit.load(args.init_checkpoint) if args.init_checkpoint else None
    rows = select_runs(load_results(args.results), args.run_id)
    datasets = {}
    for _, row in rows.iterrows():
        if row.get("mask_bits") is None:
            raise CubistError(f"run {row['run_id']} kept no mask")
        config = DataConfig.of_row(row)
        data = datasets.setdefault(config, config.build())
        if row.get("dataset_id") not in (None, data.id):
            raise CubistError(f"run {row['run_id']} was trained on data set {row['dataset_id']}, which its "
                              f"configuration does not rebuild (it gives {data.id})")
        if init is not None:
            try:
                init.sliced(tuple(int(w) for w in row["widths"]))
            except ValueError as e:
                raise CubistError(f"--init-checkpoint {args.init_checkpoint}: {e}")
    store = ResultStore(args.out) if args.out is not None else None
    for _, row in rows.iterrows():
        data = datasets[DataConfig.of_row(row)]
        widths = tuple(int(w) for w in row["widths"])
        masks = row_masks(row)
        compact = tuple(m.shape[0] for m in compact_masks(masks))[:-1]
        print(f"run {row['run_id']}: {row['method']} {'-'.join(map(str, widths))}, {int(row['weight_nnz'])} weights "
              f"(effective architecture {','.join(map(str, compact))}), lr {row['lr']:g} {row['schedule']} "
              f"seed {int(row['seed'])}: train accuracy {row['train_acc']:.4f}")
        res = retrain_from_init(widths, masks, grid, data=data, init=init, store=store)
        if args.details:
            for p in res.itertuples():
                print(f"  lr {p.lr:<5g} {p.schedule:<8} seed {p.seed}: {p.train_acc:.4f}"
                      + (" (diverged)" if p.diverged else ""))
        live = res.loc[~res["diverged"], "train_acc"]
        best = f"{live.max():.4f}" if len(live) else "none (all diverged)"
        median = f"{live.median():.4f}" if len(live) else "-"
        reaching = int(reached_target(res["train_acc"].to_numpy(), res["diverged"].to_numpy(), args.target).sum())
        print(f"  its mask from init{' checkpoint ' + init.id if init is not None else ''} ({len(res)} runs): "
              f"best {best}, median {median}; "
              f"{reaching} reach {args.target:g}" + (f"; rows in {args.out}" if store is not None else ""))
    return 0


def _run_best_init(args):
    import os

    from search.phases import best_init
    check_widths_arg(args.widths)
    check_writable_file(args.out)
    if not os.path.isdir(args.store):
        raise CubistError(f"--store {args.store}: " + ("not a result directory" if os.path.exists(args.store)
                                                      else "does not exist"))
    try:
        best_init(args.store, args.widths, args.out, target=args.target, check=args.check)
    except RuntimeError as e:   # the check failed: the row does not come back from its init
        import sys
        print(f"cubist: error: {e}", file=sys.stderr)
        return 1
    return 0
