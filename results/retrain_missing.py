"""Print the run ids whose masks the audit cannot yet judge "mask or weights": the pruned runs that
reach a target but whose mask (or, under random inits, its orbit) no search row and no
``search_retrain`` row has trained from init (``missing_run_ids`` of
:func:`cubist.report.tables.method_audit`), comma-joined, one run per distinct mask.

    python results/retrain_missing.py STORE... [--target 0.95] [--methods pilot,dwf,lrr]

``results/regenerate.sh retrain`` passes them to ``cubist search retrain --out results/retrain``.
Every run reaching a higher target also reaches a lower one, so the lowest target gives them all.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def missing_run_ids(stores, target: float, methods=None) -> list[str]:
    """The ``missing_run_ids`` of every (architecture, method) pair of the stores' audit at ``target``,
    fewest weights first within a pair, pairs in the audit's order (``methods``: only these)."""
    from cubist.report.tables import load_results, method_audit
    table = method_audit(load_results(list(stores)), target)
    if methods is not None:
        table = table[table["method"].isin(methods)]
    return [i for ids in table["missing_run_ids"] for i in ids.split(",") if i]


def main(argv=None) -> int:
    from cubist.report.tables import ResultsError
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stores", nargs="+", metavar="STORE", help="result store directories (pruner rows; search "
                                                               "and search_retrain rows answer for their masks)")
    p.add_argument("--target", type=float, default=0.95, help="train accuracy target (default 0.95)")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: every pruner)")
    args = p.parse_args(argv)
    if not 0 < args.target <= 1:
        print(f"retrain_missing: --target must be in (0, 1], got {args.target:g}", file=sys.stderr)
        return 2
    try:
        ids = missing_run_ids(args.stores, args.target, args.methods.split(",") if args.methods else None)
    except ResultsError as e:
        print(f"retrain_missing: {e}", file=sys.stderr)
        return 2
    print(",".join(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
