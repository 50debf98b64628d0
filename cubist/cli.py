"""The ``cubist`` command line.

Every subcommand lives in the module that owns its concept and exposes ``add_parser(sub)``
(registering flags and ``func``); this module only assembles them and turns bad input into one
line on stderr with exit status 2. Conventions shared by all subcommands (see
:func:`add_common`): ``--out DIR`` for the result store written (default ``results/runs``),
``--epochs``, ``--seeds K`` (seeds 0..K-1), ``--device auto|cpu|cuda``, ``--jobs N``,
``--quiet``; list flags take comma-separated values (``--lrs 0.05,0.1``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from . import __version__

DEFAULT_STORE = os.path.join("results", "runs")


class CubistError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise CubistError(f"{message} (see '{self.prog} --help')")


def csv(kind=str, choices=None, minimum=None):
    """argparse type: comma-separated values of ``kind`` (optionally restricted)."""
    def parse(text: str):
        try:
            values = [kind(v) for v in text.split(",") if v.strip() != ""]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}")
        if not values:
            raise argparse.ArgumentTypeError("expected at least one value")
        for v in values:
            if choices is not None and v not in choices:
                raise argparse.ArgumentTypeError(f"{v!r} is not one of {', '.join(map(str, choices))}")
            if minimum is not None and v < minimum:
                raise argparse.ArgumentTypeError(f"{v!r} is below the minimum {minimum}")
        return values
    parse.__name__ = f"list of {kind.__name__}"
    return parse


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def add_common(p, *, store=True, epochs=True, seeds=True, device=True, jobs=True):
    """The flags every sweep command shares."""
    if store:
        p.add_argument("--out", default=DEFAULT_STORE, metavar="DIR",
                       help=f"result store directory to write (default {DEFAULT_STORE})")
    if epochs:
        p.add_argument("--epochs", type=positive_int, default=50, help="epochs per run (default 50)")
    if seeds:
        p.add_argument("--seeds", type=positive_int, default=1, metavar="K", help="seeds 0..K-1 (default 1)")
    if device:
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="where torch runs (default auto: CUDA when available)")
    if jobs:
        p.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1,
                       help="parallel workers (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_dataclass_args(p, cls, *, exclude=(), prefix=""):
    """Flags generated from a config dataclass (name, default and help from its fields)."""
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        flag = "--" + prefix + f.name.replace("_", "-")
        typ = type(f.default) if f.default is not dataclasses.MISSING else str
        p.add_argument(flag, dest=prefix.replace("-", "_") + f.name, type=typ, default=f.default,
                       help=f"{f.metadata.get('help', '')} (default {f.default})")


def dataclass_from_args(cls, args, *, prefix="", **overrides):
    values = {f.name: getattr(args, prefix.replace("-", "_") + f.name) for f in dataclasses.fields(cls)
              if hasattr(args, prefix.replace("-", "_") + f.name)}
    values.update(overrides)
    try:
        return cls(**values)
    except ValueError as e:
        raise CubistError(str(e))


def check_writable_file(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CubistError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CubistError(f"cannot write {path}: permission denied")


# -- cubist data ---------------------------------------------------------------------------
def add_parser(sub):
    """``cubist data`` (this module's entry in :data:`COMMANDS`)."""
    from .spiral import HELDOUT_KINDS, SpiralRecipe
    p = sub.add_parser("data", help=command_help("data"),
                       description="Write the Cubist Spiral (the paper's recipe on defaults) as Parquet.")
    p.add_argument("--out", required=True, metavar="FILE", help="Parquet file to write")
    p.add_argument("--plot", metavar="FILE", help="also draw the two classes (PNG or SVG)")
    p.add_argument("--split", choices=("train",) + HELDOUT_KINDS, default="train",
                   help="training points, or a held-out companion set (default train)")
    add_dataclass_args(p, SpiralRecipe)
    p.set_defaults(func=_run_data)


def _run_data(args):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .spiral import SpiralRecipe, make_heldout, make_spiral, spiral_id, spiral_meta

    recipe = dataclass_from_args(SpiralRecipe, args)
    check_writable_file(args.out)
    if args.plot:
        check_writable_file(args.plot)
    if args.split == "train":
        X, y = make_spiral(**recipe.to_dict())
    else:
        X, y = make_heldout(args.split, **recipe.to_dict())
    # the id of these arrays; for the training split it is Dataset.spiral(...).id, the id result
    # rows of the same recipe carry
    did = spiral_id(recipe, X, y, args.split)
    meta = spiral_meta(recipe, args.split)
    table = pa.table({"x1": X[:, 0], "x2": X[:, 1], "label": y})
    table = table.replace_schema_metadata({"cubist.dataset_id": did, "cubist.recipe": str(meta)})
    pq.write_table(table, args.out)
    print(f"wrote {len(X)} points ({int(y.sum())} of class 1) to {args.out}  dataset_id={did}")
    if args.plot:
        from .plots import plot_data
        plot_data(X, y, args.plot)
        print(f"wrote {args.plot}")


# -- assembly ------------------------------------------------------------------------------
# Every subcommand: name -> (module exposing add_parser(sub), one-line help). The help lives here
# only (the modules read it with command_help) so ``cubist --help`` can list every command without
# importing torch or numba; only the module of the command being run is imported.
COMMANDS = {
    "data": ("cubist.cli", "write the Cubist Spiral as Parquet (x1, x2, label)"),
    "search": ("search.cli", "exact combinatorial search for the sparsest models"),
    "prune": ("pruners.cli", "prune spiral MLPs with a method over a grid of targets (batched runs)"),
    "audit": ("cubist.audit", "report: pruning against the exact sparsest models"),
    "plot": ("cubist.plots", "draw runs: decision regions, network graph, switching lines"),
}


def command_help(name: str) -> str:
    return COMMANDS[name][1]



def _requested(argv) -> str | None:
    """The subcommand named on the command line (the first non-option word), if it is known."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` only the named command's module is imported (others are listed by
    name and help). Without ``argv`` every command is registered in full."""
    import importlib

    parser = _Parser(prog="cubist", description=(
        "Audit pruning against the exact sparsest models of the Cubist Spiral."))
    parser.add_argument("--version", action="version", version=f"cubist-audit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    wanted = None if argv is None else _requested(argv)
    for name, (module, text) in COMMANDS.items():
        if argv is None or name == wanted:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=text)
    return parser


def main(argv=None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except CubistError as e:
        print(f"cubist: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"cubist: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cubist: interrupted (finished results are stored; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
