"""Adaptive seeds against the uniform K-init design on the same masks (issue 9, item 4).

    python results/compare_adaptive.py results/search_333 results/search_333_k10 [--target 0.95]

The first store holds the adaptive search (``--adaptive-inits 1,3,10 --exhaustive``), the second
the uniform one (``--seeds 10``, sparsest first). Both designs train the same runs (a run's init
comes from its identity), so the comparison is exact: for each design the sparsest nnz at which
some run reached the target, and how many runs each spent on the levels up to it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    from cubist.stats import reached_target
    from cubist.store import ResultStore
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("adaptive")
    ap.add_argument("uniform")
    ap.add_argument("--target", type=float, default=0.95)
    args = ap.parse_args(argv)
    cols = ["kind", "weight_nnz", "train_acc", "diverged", "metrics", "seed"]
    out = {}
    for name, path in (("adaptive", args.adaptive), ("uniform", args.uniform)):
        df = ResultStore(path).load(cols)
        df = df[df["kind"] == "search_masks"]
        ok = reached_target(df["train_acc"], df["diverged"], args.target)
        sparsest = int(df.loc[ok, "weight_nnz"].min()) if ok.any() else None
        upto = df[df["weight_nnz"] <= sparsest] if sparsest is not None else df
        rounds = {json.loads(m).get("round", 0) for m in upto["metrics"]}
        out[name] = (sparsest, len(upto), int(ok[upto.index].sum()), int(upto["seed"].max()) + 1, sorted(rounds))
        print(f"{name:9}: sparsest nnz reached {sparsest}; {len(upto):,} runs on the levels up to it "
              f"({out[name][2]} reaching), seed indices up to {out[name][3]}")
    (sa, na, *_), (su, nu, *_) = out["adaptive"], out["uniform"]
    print(f"same sparsest nnz: {sa == su}; adaptive / uniform runs up to it: {na:,} / {nu:,} = {na / nu:.3f}")


if __name__ == "__main__":
    main()
