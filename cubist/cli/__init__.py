"""The ``cubist`` command line (the application floor: it imports the report, the engines and the
core; nothing imports it).

Every subcommand is a module of this package exposing ``add_parser(sub)`` (registering flags and
``func``), listed with its one-line help in :data:`cubist.cli.common.COMMANDS`; this module only
assembles them and turns bad input into one line on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from cubist.version import __version__

from .common import COMMANDS, CubistError, _Parser


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
