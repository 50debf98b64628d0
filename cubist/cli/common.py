"""What every ``cubist`` command shares: the user-facing error, list parsers, common flags, the
command table (names and one-line help, so ``cubist --help`` imports no command module).

Conventions shared by all subcommands (see :func:`add_common`): ``--out DIR`` for the result
store written (default ``results/runs``), ``--epochs``, ``--seeds K`` (seeds 0..K-1),
``--device auto|cpu|cuda``, ``--jobs N``, ``--quiet``; list flags take comma-separated values
(``--lrs 0.05,0.1``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys


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


# -- the commands ------------------------------------------------------------------------
# Every subcommand: name -> (module exposing add_parser(sub), one-line help). The help lives here
# only (the command modules read it with command_help) so ``cubist --help`` can list every command without
# importing torch or numba; only the module of the command being run is imported.
COMMANDS = {
    "data": ("cubist.cli.data", "write the Cubist Spiral as Parquet (x1, x2, label)"),
    "search": ("cubist.cli.search", "exact combinatorial search for the sparsest models"),
    "prune": ("cubist.cli.prune", "prune spiral MLPs with a method over a grid of targets (batched runs)"),
    "audit": ("cubist.cli.audit", "report: pruning against the exact sparsest models"),
    "plot": ("cubist.cli.plot", "draw runs: decision regions, network graph, switching lines"),
}


def command_help(name: str) -> str:
    return COMMANDS[name][1]
