"""Hand-made result rows with known answers, for the analysis, plot and audit tests."""
from __future__ import annotations

import numpy as np

from cubist.masks import bias_masks, mask_counts, pack_masks
from cubist.store import ResultStore, make_row

W3 = (2, 3, 3, 3, 1)
W16 = (2, 16, 16, 16, 1)
TARGET = 0.95


def layer_shapes(widths):
    return [(widths[l + 1], widths[l]) for l in range(len(widths) - 1)]


def mask_from_flat(widths, keep) -> list[np.ndarray]:
    """Masks with exactly the flat positions ``keep`` (over the concatenated layers) set."""
    shapes = layer_shapes(widths)
    flat = np.zeros(sum(a * b for a, b in shapes), dtype=bool)
    flat[np.asarray(list(keep), dtype=int)] = True
    out, start = [], 0
    for a, b in shapes:
        out.append(flat[start:start + a * b].reshape(a, b))
        start += a * b
    return out


def random_mask(widths, nnz, seed) -> list[np.ndarray]:
    total = sum(a * b for a, b in layer_shapes(widths))
    return mask_from_flat(widths, np.random.default_rng(seed).choice(total, nnz, replace=False))


def full_mask(widths) -> list[np.ndarray]:
    return [np.ones(s, dtype=bool) for s in layer_shapes(widths)]


def weights_for(masks, seed=0):
    """Weights with alternating signs on the mask (and biases by the paper's rule)."""
    rng = np.random.default_rng(seed)
    out = []
    for m, bm in zip(masks, bias_masks(masks)):
        w = (rng.uniform(0.2, 1.5, m.shape) * rng.choice([-1, 1], m.shape) * m).astype(np.float32)
        b = (rng.uniform(-0.5, 0.5, m.shape[0]) * bm).astype(np.float32)
        out.append((w, b))
    return out


def row(kind, method, widths, masks, acc, *, seed=0, lr=0.1, schedule="cosine", target_nnz=None, diverged=False,
        weights=None, keep_weights=True, init=None, init_seed=None, params=None):
    config = dict(kind=kind, method=method, widths=list(widths), init_width=16, lr=lr, schedule=schedule,
                  epochs=50, batch_size=128, momentum=0.9, weight_decay=5e-4, seed=seed,
                  target_nnz=target_nnz, params=params or {}, dataset_id="handmade",
                  search={"mask": pack_masks(masks)[0].hex()})  # the mask is part of a run's identity
    if init is not None:
        config.update(init=init, init_seed=init_seed)
    counts = mask_counts(masks)
    metrics = dict(train_acc=acc, heldout_acc=acc, final_loss=float("nan") if diverged else 0.1,
                   diverged=diverged, **counts)
    if keep_weights and weights is None:
        weights = weights_for(masks, seed)
    return make_row(config, masks=masks, weights=weights if keep_weights else None, metrics=metrics,
                    engine="handmade", wall_time_s=0.0)


# the search at (3, 3, 3): distinct masks A, B, C at 20 nnz, D and E at 18, F at 25
MASK_A = random_mask(W3, 20, 1)
MASK_B = random_mask(W3, 20, 2)
MASK_C = random_mask(W3, 20, 3)
MASK_D = random_mask(W3, 18, 4)
MASK_E = random_mask(W3, 18, 5)
MASK_F = random_mask(W3, 25, 6)


def search_rows():
    return [
        row("search_masks", "mask", W3, MASK_A, 0.97, seed=0),
        row("search_masks", "mask", W3, MASK_A, 0.90, seed=1),
        row("search_masks", "mask", W3, MASK_B, 0.96, seed=0),
        row("search_masks", "mask", W3, MASK_C, 0.80, seed=0),
        row("search_masks", "mask", W3, MASK_D, 0.99, seed=0, diverged=True),   # diverged: never counts
        row("search_masks", "mask", W3, MASK_E, 0.94, seed=0),
        row("search_masks", "mask", W3, MASK_F, 0.99, seed=0),
        row("search_masks", "mask", (2, 2, 2, 2, 1), random_mask((2, 2, 2, 2, 1), 10, 7), 0.70),
    ]


def prune_rows():
    m = lambda nnz, s: random_mask(W3, nnz, 100 + s)  # noqa: E731
    return [
        # imp at (3,3,3): 24 -> 1 of 2 reach; 22 -> both reach (tied accuracy); 21 -> none
        row("prune", "imp", W3, m(24, 0), 0.96, seed=0, target_nnz=24),
        row("prune", "imp", W3, m(24, 1), 0.93, seed=1, target_nnz=24),
        row("prune", "imp", W3, m(22, 2), 0.955, seed=0, target_nnz=22),
        row("prune", "imp", W3, m(22, 3), 0.955, seed=1, target_nnz=22),
        row("prune", "imp", W3, m(21, 4), 0.90, seed=0, target_nnz=21),
        # snip ties imp at 22
        row("prune", "snip", W3, m(22, 5), 0.96, seed=0, target_nnz=22),
        # random never reaches the target (one run diverged with a high stale accuracy)
        row("prune", "random", W3, m(24, 6), 0.90, seed=0, target_nnz=24),
        row("prune", "random", W3, m(26, 7), 0.99, seed=1, target_nnz=26, diverged=True),
        # imp at width 16: reaches exactly the target at 20
        row("prune", "imp", W16, random_mask(W16, 30, 8), 0.99, seed=0, target_nnz=30),
        row("prune", "imp", W16, random_mask(W16, 20, 9), 0.95, seed=0, target_nnz=20),
    ]


def write_store(path, rows) -> ResultStore:
    store = ResultStore(path)
    store.write(rows)
    return store


# -- success over inits: K inits per grid point, known counts ---------------------------------
def grid_runs(kind, method, widths, masks, lr, schedule, runs, successes, *, target_nnz=None, diverged=0,
              best_acc=0.97, params=None):
    """``runs`` runs (seeds 0..runs-1, each its own random init) of one grid point, the first
    ``successes`` reaching TARGET (the first at ``best_acc``, the others at 0.96), then
    ``diverged`` diverged runs with a stale 0.99 (never a success), the rest at 0.90."""
    out = []
    for k in range(runs):
        ok, div = k < successes, successes <= k < successes + diverged
        acc = (best_acc if k == 0 else 0.96) if ok else (0.99 if div else 0.90)
        out.append(row(kind, method, widths, masks, acc, seed=k, lr=lr, schedule=schedule, target_nnz=target_nnz,
                       diverged=div, keep_weights=False, init="random", init_seed=1000 * k + 7, params=params))
    return out


# the search at (3, 3, 3), 10 inits per grid point unless said:
#   20 nnz: P 3/10 at (0.05, cosine) and 1/10 at (0.1, cosine) -> pooled 4/20, best 3/10;
#           Q 5/10 at (0.05, cosine) and 0/10 (two diverged) at (0.1, cosine) -> pooled 5/20, best 5/10
#   18 nnz: R 2/10 at (0.05, cosine) and 2/10 at (0.1, step), the latter with the better accuracy;
#           S 0/5 at (0.05, cosine) and 0/10 at (0.1, cosine) (K = 5)
#   24 nnz: T 9/10 at (0.05, cosine)
MASK_P, MASK_Q = random_mask(W3, 20, 201), random_mask(W3, 20, 202)
MASK_R, MASK_S = random_mask(W3, 18, 203), random_mask(W3, 18, 204)
MASK_T = random_mask(W3, 24, 205)


def success_search_rows():
    g = lambda m, lr, sch, n, k, **kw: grid_runs("search_masks", "mask", W3, m, lr, sch, n, k, **kw)  # noqa: E731
    return (g(MASK_P, 0.05, "cosine", 10, 3) + g(MASK_P, 0.1, "cosine", 10, 1)
            + g(MASK_Q, 0.05, "cosine", 10, 5) + g(MASK_Q, 0.1, "cosine", 10, 0, diverged=2)
            + g(MASK_R, 0.05, "cosine", 10, 2, best_acc=0.961) + g(MASK_R, 0.1, "step", 10, 2, best_acc=0.98)
            + g(MASK_S, 0.05, "cosine", 5, 0) + g(MASK_S, 0.1, "cosine", 10, 0)
            + g(MASK_T, 0.05, "cosine", 10, 9))


# the pruners on (3, 3, 3): gmp at budget 22: 3/10 at lr 0.05, 1/10 at lr 0.1 (cosine) -> pooled 4/20,
# best 3/10; at budget 19: 0/10 at both; snip at budget 22: 10/10 at lr 0.1 only
def success_prune_rows():
    g = lambda m, lr, n, k, F: grid_runs("prune", m, W3, random_mask(W3, F, 300 + F), lr, "cosine", n, k,  # noqa: E731
                                         target_nnz=F, params={"method": m})
    return (g("gmp", 0.05, 10, 3, 22) + g("gmp", 0.1, 10, 1, 22) + g("gmp", 0.05, 10, 0, 19)
            + g("gmp", 0.1, 10, 0, 19) + g("snip", 0.1, 10, 10, 22))


def success_dense_rows():
    """Phase 1: (3,3,3) 3/10 at lr 0.05 and 1/10 at lr 0.1; (2,2,2) 0 of 2 x 4."""
    small = (2, 2, 2, 2, 1)
    return (grid_runs("search_widths", "dense", W3, full_mask(W3), 0.05, "cosine", 10, 3)
            + grid_runs("search_widths", "dense", W3, full_mask(W3), 0.1, "cosine", 10, 1)
            + grid_runs("search_widths", "dense", small, full_mask(small), 0.05, "cosine", 4, 0)
            + grid_runs("search_widths", "dense", small, full_mask(small), 0.1, "cosine", 4, 0))
