"""Is a pruned network's mask enough, or are its weights the ticket?

Retrain the mask of a stored pruning run from the initialisation (``MaskedMLP`` on the run's
widths with the width-16 init scale, as the search trains masks) on the paper's whole pruning
grid (lr 0.05, 0.1, 0.2 x cosine, step, constant) and several seeds, and compare with the run's
own accuracy. Usage (the output committed as ``retrain_from_init.txt``):

    python results/retrain_from_init.py results/prune 716187f14615505d --seeds 3
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed

from cubist import MaskedMLP, TrainConfig, make_spiral, train_reference
from cubist.analysis import compact_masks
from cubist.store import row_masks

LRS, SCHEDULES = (0.05, 0.1, 0.2), ("cosine", "step", "constant")


def _train(widths, masks, X, y, lr, schedule, seed):
    torch.set_num_threads(1)
    model = MaskedMLP(widths, masks, init_width=16, seed=seed)
    return lr, schedule, seed, train_reference(model, X, y, TrainConfig(lr=lr, schedule=schedule), device="cpu").train_acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("run_id")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    df = pd.read_parquet(args.store)
    rows = df[df["run_id"].str.startswith(args.run_id)]
    if len(rows) != 1:
        raise SystemExit(f"error: {len(rows)} runs match {args.run_id!r}")
    row = rows.iloc[0].to_dict()
    widths = tuple(int(w) for w in row["widths"])
    masks = row_masks(row)
    compact = tuple(m.shape[0] for m in compact_masks(masks))[:-1]
    print(f"run {row['run_id']}: {row['method']} {row['params']}")
    print(f"  widths {widths}, {int(row['weight_nnz'])} weights ({int(row['effective_nnz'])} effective; "
          f"effective architecture {compact}), lr {row['lr']} {row['schedule']} seed {row['seed']}: "
          f"train accuracy {row['train_acc']:.4f}")
    X, y = make_spiral()
    grid = list(itertools.product(LRS, SCHEDULES, range(args.seeds)))
    out = Parallel(n_jobs=args.jobs)(delayed(_train)(widths, masks, X, y, *g) for g in grid)
    print(f"the same mask trained from init ({len(grid)} runs: lr x schedule x seed):")
    for lr, schedule, seed, acc in out:
        print(f"  lr {lr:<4} {schedule:<8} seed {seed}: {acc:.4f}")
    accs = np.array([o[3] for o in out])
    print(f"best {accs.max():.4f}, median {np.median(accs):.4f}; runs reaching 0.95: {(accs >= 0.95).sum()}")


if __name__ == "__main__":
    main()
