"""The ``cubist`` command line (the application floor: it imports the report, the engines and the
core; nothing imports it).

Every subcommand is a module of this package exposing ``add_parser(sub)`` (registering flags and
``func``), listed with its one-line help in :data:`cubist.cli.common.COMMANDS`; this module only
assembles them and turns bad input into one line on stderr with exit status 2.

Stops: SIGTERM and SIGINT (Ctrl-C) end a command with one line on stderr and exit status 143 or
130 (128 + the signal). The signal unwinds the command (a local cluster it started is closed on
the way), then this process's loky workers are killed (:func:`cubist.dispatch.stop_workers`).
Rows of finished chunks are already in the store (the driver writes each chunk as it returns),
so the same command resumes. A chunk trained in this process (``--jobs 1``) stops within one
kernel call of the numba engine, which does not see signals: the search trains it with epoch
reports, so the engine returns to Python at least every 10 epochs (:func:`search.phases.run_chunks`;
the pruners' torch steps are short anyway). After ``kill -9`` the workers see their driver gone and
exit (:func:`cubist.dispatch._watch_driver`).
"""
from __future__ import annotations

import argparse
import signal
import sys
import warnings

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


class Stopped(BaseException):
    """A stop signal (SIGTERM, SIGINT) received by the command; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def _install_stop_handlers() -> dict:
    """SIGTERM and SIGINT raise :class:`Stopped` (main thread only); returns the previous handlers."""
    old = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            old[sig] = signal.signal(sig, _raise_stopped)
        except (ValueError, OSError):  # not the main thread: leave the signals alone
            pass
    return old


def _stopped(signum: int) -> int:
    """Kill the workers, say so in one line; the exit status 128 + signum."""
    for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal does not interrupt the cleanup
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
    from cubist.dispatch import stop_workers
    stop_workers()
    name = signal.Signals(signum).name
    print(f"cubist: stopped by {name}; finished results are stored, rerun to resume", file=sys.stderr, flush=True)
    return 128 + signum


def quiet_joblib_stop_warning() -> None:
    """A stop cancels the chunks in flight on purpose: joblib's warning about them is no news.

    Its message starts with the count of tasks finished but not yet handed back when there are
    any ("1 tasks have been successfully executed  but not used. Additionally, 4 tasks which
    ..."), else with the count cancelled ("4 tasks which were still being processed ...").
    """
    warnings.filterwarnings("ignore", message=r"\d+ tasks (have been successfully executed|which were still being "
                            r"processed by the workers)", category=UserWarning)


def main(argv=None) -> int:
    old = _install_stop_handlers()
    quiet_joblib_stop_warning()
    try:
        return _main(argv)
    except Stopped as e:
        return _stopped(e.signum)
    except KeyboardInterrupt:  # SIGINT before the handlers (or a handler someone else installed)
        return _stopped(signal.SIGINT)
    finally:
        for sig, handler in old.items():
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError, TypeError):
                pass


def _main(argv=None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
