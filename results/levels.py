"""Per-level table of a phase-2 store (markdown), as in results/README.md.

    python results/levels.py results/search_434_995 --target 0.995 [--thresholds 0.99,0.95]

One line per weight-nnz level: the level's orbit masks (``count_masks``), the masks trained, the
runs, the masks that got a second and a third adaptive round (``round`` in the rows' metrics),
the best run, and the runs reaching each threshold; then the engines (``<width>/<cpu>``) and CPU
models that made the rows, since rows are bit for bit only on one CPU model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def level_table(store: str, target: float, thresholds=(0.99, 0.95)) -> str:
    import cubist
    from search.enumerate import count_masks
    df = cubist.ResultStore(store).load(["kind", "widths", "params", "weight_nnz", "train_acc", "metrics", "engine"])
    df = df[df["kind"] == "search_masks"]
    if df.empty:
        raise SystemExit(f"{store}: no phase-2 rows")
    widths = tuple(int(w) for w in df["widths"].iloc[0])
    counts = count_masks(widths)
    df = df.assign(mask=[json.loads(p)["mask"] for p in df["params"]],
                   round=[json.loads(m).get("round", 0) for m in df["metrics"]])
    marks = [target, *thresholds]
    head = ["weights", "masks", "masks trained", "runs", "masks in round 1", "in round 2", "best run",
            *[f"runs >= {t:g}" for t in marks]]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for nnz, g in df.groupby("weight_nnz"):
        by_round = g.groupby("round")["mask"].nunique()
        cells = [nnz, f"{counts[int(nnz)]:,}", f"{g['mask'].nunique():,}", f"{len(g):,}",
                 f"{by_round.get(1, 0):,}", f"{by_round.get(2, 0):,}", f"{g['train_acc'].max():.4f}",
                 *[f"{int((g['train_acc'] >= t).sum()):,}" for t in marks]]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines.append("")
    lines.append(f"{len(df):,} runs; engines: " + ", ".join(f"{e} {n:,}" for e, n in df["engine"].value_counts().items()))
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--target", type=float, required=True)
    ap.add_argument("--thresholds", default="0.99,0.95", help="further accuracies to count runs at")
    a = ap.parse_args(argv)
    print(level_table(a.store, a.target, tuple(float(t) for t in a.thresholds.split(","))))


if __name__ == "__main__":
    main()
