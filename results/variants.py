"""The method variants of the reference sweeps, and the ``cubist prune`` flags of each.

One table for every sweep script (``run_reference.sh``, ``run_fixed_init.sh``,
``run_overparam.sh`` through ``overparam.py``): a variant is a method with the options that make
it one of the sparsest paper's baselines (the five density schemes of random pruning, IMP with
weight rewinding to step 390) or one of the methods added since. Iterative methods run the
sparsest paper's imp_LTH protocol: exactly 5 rounds with geometric targets (``--cycles 5``).

    python results/variants.py list [reference|all|working]   the variants, space-separated
    python results/variants.py flags VARIANT           its cubist prune flags
"""
from __future__ import annotations

import argparse
import sys

RANDOM_SCHEMES = ("uniform", "er", "erk", "balanced", "pyramidal")

# variant -> cubist prune method flags, in the order the sweeps run them
VARIANTS = {
    "gmp": "--method gmp", "snip": "--method snip", "grasp": "--method grasp", "synflow": "--method synflow",
    **{f"random-{s}": f"--method random --scope layer --density-scheme {s}" for s in RANDOM_SCHEMES},
    "pilot": "--method pilot", "spred": "--method spred", "str": "--method str", "dwf": "--method dwf",
    "rigl": "--method rigl", "force": "--method force", "itersnip": "--method itersnip", "prospr": "--method prospr",
    "imp": "--method imp --cycles 5", "imp-wr": "--method imp --rewind step --rewind-step 390 --cycles 5",
    "lrr": "--method lrr --cycles 5", "imp+pilot": "--method imp+pilot --cycles 5",
    "lrr+pilot": "--method lrr+pilot --cycles 5",
}

# Working points of issue 12, item 5 that are not a method's defaults (results/hparams.txt,
# results/working_points.py): run on the matrix like a variant, but reported under the method's own name
# (cubist.report.tables.method_label), so their sweeps go into a store of their own (results/overparam_pilot075)
# and are not in "list all". DWF's and LRR's working points are their defaults: the matrix's rows.
WORKING_POINTS = {"pilot-k0.75": "--method pilot --pilot-k 0.75"}

# the paper's matrix baselines added by issue 12, run by run_overparam.sh; not in the reference sweeps
ADDED = ("rigl", "force", "itersnip", "prospr")
# the 18 variants of the committed reference sweeps (results/prune, run_reference.sh, run_fixed_init.sh)
REFERENCE = tuple(v for v in VARIANTS if v not in ADDED)


def flags(variant: str) -> str:
    table = {**VARIANTS, **WORKING_POINTS}
    if variant not in table:
        raise SystemExit(f"variants: unknown variant {variant!r}; choose from {', '.join(table)}")
    return table[variant]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list").add_argument("which", nargs="?", choices=("reference", "all", "working"), default="all")
    sub.add_parser("flags").add_argument("variant")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        print(" ".join({"reference": REFERENCE, "working": WORKING_POINTS}.get(args.which, VARIANTS)))
    else:
        print(flags(args.variant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
