"""Print each method's working point from a hyper-parameter sweep store (results/run_hparams.sh).

    python results/working_points.py results/hparams [--target 0.95] [--all]

The rule is :func:`cubist.report.tables.working_points` (most runs reaching the target summed over the
budgets swept; ties: higher mean train accuracy, a diverged run counting 0.5; then the simpler setting). It
prints every setting ranked (with --all) or the top three per method, then one line of ``cubist prune``
flags per working point, for a script that runs those settings on the whole matrix.
"""
from __future__ import annotations

import argparse
import sys

from cubist.report.audit import rate_text, text_table
from cubist.report.tables import ResultsError, load_results, working_points


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", nargs="+", help="result store directories (the sweep's)")
    p.add_argument("--target", type=float, default=0.95, help="train accuracy target (default 0.95)")
    p.add_argument("--all", action="store_true", help="every setting, not only the top three per method")
    args = p.parse_args(argv)
    try:
        table = working_points(load_results(args.store), args.target)
    except ResultsError as e:
        print(f"working_points: {e}", file=sys.stderr)
        return 2
    if table.empty:
        print("no pruner rows")
        return 0
    shown = table if args.all else table[table["rank"] <= 3]
    view = shown[["method", "group", "rank", "flags", "budgets", "runs"]].copy()
    view[f"reaching {args.target:g}"] = [rate_text(k, n, lo, hi) for k, n, lo, hi in
                                         zip(shown["successes"], shown["runs"], shown["low"], shown["high"])]
    for c in ("mean_acc", "best_acc", "epochs"):
        view[c] = shown[c]
    print(text_table(view.drop(columns="group")))
    print()
    print(f"working points (target {args.target:g}):")
    for _, r in table[table["chosen"]].iterrows():
        print(f"  {r['flags']}    # {r['successes']}/{r['runs']} runs reach it, mean accuracy {r['mean_acc']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
