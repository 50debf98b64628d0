"""``cubist store check|repair DIR``: what a result store directory holds, and its repair.

``check`` reads every shard (``DIR/part-*.parquet``) whole, verifies its checksum
(:mod:`cubist.store`), and prints the usable shards, rows and runs, then each problem: damaged
shards (they do not open or decode, or fail their checksum), foreign ones (another schema),
shards of a newer store format, duplicate rows (a run stored twice, by two racing writers) and
temporaries left by killed writers; files that are not shards are listed as ignored. It changes
nothing. Exit status 0 when the store has no problem, 1 when it has one.

``repair`` moves damaged and foreign shards into ``DIR/_quarantine/`` (their runs are then
missing, so the next resume trains them again), removes the temporaries of dead writers and
rewrites the shards holding duplicate rows so that each run has one row; it prints what it did,
then checks again: exit status 0 when the store is clean, 1 when a problem is left (a shard of a
newer format, which this version leaves alone). Run it while no sweep writes into the store.

A missing directory or a path that is not a directory is one line on stderr, exit status 2.
"""
from __future__ import annotations

import fnmatch
import os

from .common import CubistError, command_help


def add_parser(sub):
    """``cubist store`` (its entry in :data:`cubist.cli.common.COMMANDS`)."""
    p = sub.add_parser("store", help=command_help("store"),
                       description="Check or repair a result store directory (its part-*.parquet shards).")
    ss = p.add_subparsers(dest="store_command", metavar="ACTION", required=True, parser_class=type(p))
    c = ss.add_parser("check", help="report damaged, foreign and duplicate shards and stray files (changes nothing)",
                      description="Verify every shard; exit 0 when the store is clean, 1 when it has a problem.")
    c.add_argument("dir", metavar="DIR", help="result store directory")
    c.set_defaults(func=_run_check)
    r = ss.add_parser("repair", help="quarantine bad shards, remove stale temporaries, keep one row per run",
                      description="Move damaged and foreign shards to DIR/_quarantine, remove temporaries of dead "
                                  "writers, drop duplicate rows; exit 0 when the store is then clean, 1 otherwise.")
    r.add_argument("dir", metavar="DIR", help="result store directory")
    r.set_defaults(func=_run_repair)


def _store(path: str, heal: bool):
    from cubist.store import QUARANTINE, SHARD_GLOB, ResultStore
    if not os.path.exists(path):
        raise CubistError(f"result store {path} does not exist")
    if not os.path.isdir(path):
        raise CubistError(f"{path} is not a result store directory")
    names = os.listdir(path)
    if not any(fnmatch.fnmatchcase(n, SHARD_GLOB) or n == QUARANTINE or (n.startswith(".part-") and n.endswith(".tmp"))
               for n in names):
        raise CubistError(f"{path} is not a result store (no {SHARD_GLOB} shards)")
    return ResultStore(path, heal=heal, log=lambda message: None)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _print_report(report, *, heading: str) -> None:
    from cubist.store import QUARANTINE, SHARD_GLOB
    legacy = f" ({report.legacy} written before checksums, not verifiable)" if report.legacy else ""
    print(f"{heading} {report.path}: {_count(report.shards, 'shard')} usable{legacy}, {_count(report.rows, 'row')}, "
          f"{_count(report.runs, 'run')}")
    for what, items in (("damaged", report.damaged), ("foreign", report.foreign), ("newer format", report.newer)):
        for name, reason in items:
            done = f"; moved to {QUARANTINE}/" if name in report.moved else ""
            print(f"  {what}: {name} ({reason}){done}")
    if report.duplicate_rows:
        print(f"  duplicate rows: {report.duplicate_rows} (of {_count(report.duplicate_runs, 'run')} stored more than once)")
    for t in report.removed:
        print(f"  removed temporary: {t.name} ({t.why})")
    for t in report.temporaries:
        print(f"  {'stale temporary' if t.stale else 'temporary'}: {t.name} ({t.why})")
    if report.stray:
        print(f"  ignored (not shards; read the shards with {report.path}/{SHARD_GLOB}): {', '.join(report.stray)}")
    if report.quarantined:
        print(f"  quarantined: {_count(report.quarantined, 'file')} in {os.path.join(report.path, QUARANTINE)}")


def _run_check(args):
    report = _store(args.dir, heal=False).check()
    _print_report(report, heading="store")
    if report.problems:
        print(f"{_count(report.problems, 'problem')} (see 'cubist store repair {args.dir}')")
        return 1
    print("clean")
    return 0


def _run_repair(args):
    store = _store(args.dir, heal=True)
    report = store.check()
    dropped = store.drop_duplicates() if report.duplicate_rows else 0
    _print_report(report, heading="repaired")
    if dropped:
        print(f"  dropped {dropped} duplicate rows: one row per run")
    after = _store(args.dir, heal=False).check()
    if after.problems:
        print(f"{_count(after.problems, 'problem')} left (see 'cubist store check {args.dir}')")
        return 1
    print(f"clean: {_count(after.shards, 'shard')}, {_count(after.rows, 'row')}, one per run")
    return 0
