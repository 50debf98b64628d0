"""``cubist prune``: a pruning sweep on the Cubist Spiral, R runs trained as one batched model.

Every nnz x lr x schedule x seed combination is one run (Zhang & Papyan 2024's protocol); rows
go to the result store (``--out``) as chunks finish; rerunning skips stored runs. On CPU,
``--jobs N`` runs chunks in N worker processes with one torch thread each (tiny batched
matmuls gain little from threads, and oversubscribed threads are much slower); on CUDA one
process drives the GPU. Method
hyper-parameters are flags generated from the methods' config dataclasses; a flag the chosen
method does not take is an error.
"""
from __future__ import annotations

import argparse
import dataclasses

from cubist.train import SCHEDULES

from .common import CubistError, add_common, command_help, csv, positive_int


def _method_fields() -> dict[str, tuple[type, str, list[str]]]:
    """Union of the config fields of all methods: name -> (type, help, methods taking it)."""
    from pruners import load_methods
    out: dict[str, tuple[type, str, list[str]]] = {}
    for name, cls in sorted(load_methods().items()):
        for f in dataclasses.fields(cls.Config):
            typ = type(f.default) if f.default is not dataclasses.MISSING else str
            if f.name in out:
                out[f.name][2].append(name)
            else:
                out[f.name] = (typ, f.metadata.get("help", ""), [name])
    return out


def add_parser(sub) -> None:
    from pruners import load_methods
    methods = sorted(load_methods())
    p = sub.add_parser(
        "prune", help=command_help("prune"),
        description="Prune spiral MLPs to exact weight counts with one method over every "
                    "nnz x lr x schedule x seed, R runs trained at once as one batched model. "
                    "Method flags default to the method's own defaults.")
    p.add_argument("--method", required=True, choices=methods, help="pruning method")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--width", type=positive_int, default=None, help="hidden width of the 3 hidden layers (default 16)")
    g.add_argument("--widths", type=csv(int, minimum=1), default=None, metavar="D1,D2,D3",
                   help="hidden widths, e.g. 3,3,3 (input 2 and one output are implied)")
    p.add_argument("--nnz", type=csv(int, minimum=1), default=[15, 20, 25, 30, 40, 50, 65],
                   help="target weight nonzeros F (default 15,20,25,30,40,50,65)")
    p.add_argument("--lrs", type=csv(float), default=[0.05, 0.1, 0.2], help="learning rates (default 0.05,0.1,0.2)")
    p.add_argument("--schedules", type=csv(str, choices=SCHEDULES), default=list(SCHEDULES),
                   help="LR schedules (default cosine,step,constant)")
    p.add_argument("--engine", choices=["batched", "single"], default="batched",
                   help="batched: R runs as one model (default); single: one plain MLP at a time")
    p.add_argument("--chunk", type=int, default=0, metavar="R",
                   help="runs per batched model (default 0: auto, 256 on CPU, 2048 on CUDA)")
    p.add_argument("--heldout", choices=["between", "noisy"], default="between", help="held-out set (default between)")
    p.add_argument("--no-weights", action="store_true", help="do not store final weights in the rows")
    p.add_argument("--target", type=float, default=0.95,
                   help="train accuracy the closing line counts runs reaching (default 0.95; not stored)")
    add_common(p)
    mg = p.add_argument_group("method hyper-parameters (each applies to the methods listed)")
    for name, (typ, help_text, takers) in _method_fields().items():
        flag = "--" + name.replace("_", "-")
        who = ", ".join(takers) if len(takers) < len(methods) else "all methods"
        if typ is bool:
            mg.add_argument(flag, dest=f"m_{name}", action=argparse.BooleanOptionalAction, default=None,
                            help=f"{help_text} [{who}]")
        else:
            mg.add_argument(flag, dest=f"m_{name}", type=typ, default=None, metavar=typ.__name__.upper(),
                            help=f"{help_text} [{who}]")
    p.set_defaults(func=_run)


def sweep_config_from_args(args):
    """The :class:`~pruners.runner.SweepConfig` described by parsed ``cubist prune`` flags."""
    from pruners import get_method
    from pruners.runner import SweepConfig
    cls = get_method(args.method)
    accepted = {f.name for f in dataclasses.fields(cls.Config)}
    params = {}
    for key, value in vars(args).items():
        if not key.startswith("m_") or value is None:
            continue
        name = key[2:]
        if name not in accepted:
            raise CubistError(f"--{name.replace('_', '-')} does not apply to method {args.method}")
        params[name] = value
    if args.widths is not None:
        hidden = tuple(args.widths)
    else:
        hidden = (args.width or 16,) * 3
    try:
        return SweepConfig(method=args.method, widths=(2, *hidden, 1), nnz=tuple(args.nnz), lrs=tuple(args.lrs),
                           schedules=tuple(args.schedules), seeds=args.seeds, epochs=args.epochs,
                           method_params=params, heldout=args.heldout, device=args.device, engine=args.engine,
                           chunk=args.chunk, keep_weights=not args.no_weights)
    except (ValueError, TypeError) as e:
        raise CubistError(str(e))


def _run(args) -> int:
    import os

    import numpy as np

    from cubist.stats import reached_target
    from cubist.store import ResultStore

    from pruners.runner import build_runs, load_data, run_sweep
    cfg = sweep_config_from_args(args)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CubistError(f"--out {args.out} exists and is not a directory")
    store = ResultStore(args.out)
    total = len(build_runs(cfg, load_data(cfg)))
    done_before = len(store.done()) if os.path.isdir(args.out) else 0
    rows = run_sweep(cfg, store=store, progress=not args.quiet, threads=1, jobs=args.jobs)
    if not args.quiet:
        skipped = total - len(rows)
        reached = int(reached_target([np.nan if r["train_acc"] is None else r["train_acc"] for r in rows],
                                     [r["diverged"] for r in rows], args.target).sum())
        print(f"prune {cfg.method}: {len(rows)} runs done, {skipped} already stored"
              f" ({done_before} rows in {args.out} before); {reached} reached {args.target:g} train accuracy")
    return 0
