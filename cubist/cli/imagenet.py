"""``cubist imagenet``: one pruning run on an ImageFolder data set (ImageNet, or the digits of
``cubist data digits``) with any torchvision model and any registered method, through torchrun.

The input is checked here, before any process starts (one line, exit 2: a missing or malformed
data directory, an unknown architecture, method or preset, a density outside (0, 1], a flag the
method does not take, a resume checkpoint of another configuration); then ``--nproc N`` processes
are launched with ``torchrun --nproc-per-node N -m pruners.imagenet`` and the same flags
(``--nnodes``, ``--node-rank``, ``--rdzv-endpoint``, ``--rdzv-id`` are passed to torchrun for
several nodes). With ``--nproc 1`` and no node flags the run stays in this process.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

from .common import CubistError, add_method_flags, command_help, config_flags, given_fields, positive_int

LAUNCH_FLAGS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id")


def add_parser(sub) -> None:
    from pruners import load_methods
    from pruners.imagenet import PRESETS, ImageNetConfig
    methods = sorted(load_methods())
    p = sub.add_parser("imagenet", help=command_help("imagenet"),
                       description="One pruning run on an ImageFolder data set (train/ and val/) with a "
                                   "torchvision model, DDP over --nproc processes (torchrun). Rows go to --out.")
    p.add_argument("--data", required=True, metavar="DIR", help="ImageFolder directory with train/ and val/")
    p.add_argument("--method", required=True, choices=methods, help="pruning method of the registry")
    p.add_argument("--preset", default="", metavar="NAME",
                   help=f"a paper's ImageNet recipe: {', '.join(sorted(PRESETS))} (explicit flags override it)")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    config_flags(p, ImageNetConfig)
    g = p.add_argument_group("launch (torchrun)")
    g.add_argument("--nproc", type=positive_int, default=1, help="processes on this node (default 1)")
    g.add_argument("--nnodes", default=None, help="torchrun --nnodes (several nodes)")
    g.add_argument("--node-rank", default=None, help="torchrun --node-rank")
    g.add_argument("--rdzv-endpoint", default=None, help="torchrun --rdzv-endpoint HOST:PORT")
    g.add_argument("--rdzv-id", default=None, help="torchrun --rdzv-id")
    add_method_flags(p)
    p.set_defaults(func=_run)


def config_from_args(args):
    """The :class:`~pruners.imagenet.ImageNetConfig` of parsed flags (preset under explicit flags)."""
    from pruners import get_method
    from pruners.imagenet import ImageNetConfig, apply_preset
    cls = get_method(args.method)
    params = given_fields(args, "m_", {f.name for f in dataclasses.fields(cls.Config)}, f"method {args.method}")
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ImageNetConfig)
             if f.metadata.get("cli", True) and hasattr(args, f.name)}
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(ImageNetConfig)}
    explicit = {k: v for k, v in given.items() if v != defaults[k]}
    explicit.update(data=args.data, method=args.method)
    try:
        if args.preset:
            explicit, params = apply_preset(args.preset, explicit, params)
        return ImageNetConfig(**{**given, **explicit}, method_params=params)
    except (ValueError, TypeError) as e:
        raise CubistError(str(e).splitlines()[0])


def _forwarded(argv) -> list[str]:
    """The command line minus the launch flags (which go to torchrun)."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip = "=" not in word
            continue
        out.append(word)
    return out


def _run(args) -> int:
    from pruners.imagenet import check_image_folder, run
    cfg = config_from_args(args)
    try:
        check_image_folder(cfg.data)
    except ValueError as e:
        raise CubistError(str(e))
    from .common import check_store_dir
    check_store_dir(cfg.out)
    multi = args.nproc > 1 or args.nnodes not in (None, "1")
    if not multi:
        try:
            run(cfg, resume=args.resume, quiet=args.quiet)
        except ValueError as e:
            raise CubistError(str(e).splitlines()[0])
        return 0
    argv = sys.argv[1:]
    if argv and argv[0] == "imagenet":
        argv = argv[1:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.nproc)]
    if args.nnodes not in (None, "1"):
        cmd += ["--nnodes", args.nnodes, "--rdzv-backend", "c10d"]
        for flag, value in (("--node-rank", args.node_rank), ("--rdzv-endpoint", args.rdzv_endpoint),
                            ("--rdzv-id", args.rdzv_id)):
            if value is not None:
                cmd += [flag, value]
    else:
        cmd += ["--standalone"]
    cmd += ["-m", "pruners.imagenet", *_forwarded(argv)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
    done = subprocess.run(cmd, env=env)
    if done.returncode:
        raise CubistError(f"torchrun ended with status {done.returncode} (the first error is above)")
    return 0
