"""Mask arithmetic with a leading replica axis: exact top-k that respects the current mask,
exact integer apportioning of a budget, and flow repair.

Exact budgets matter for the audit: a pruned network is compared with the sparsest network of
the same weight count, so every replica ends with exactly its target count (ties are broken by
position, deterministically), never a Bernoulli draw or a threshold that lets ties through.
"""
from __future__ import annotations

import numpy as np
import torch


def topk_keep(scores: torch.Tensor, current: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Boolean ``(R, N)``: per row the ``k[r]`` highest-scoring entries among ``current[r]``.

    Entries outside ``current`` are never kept (pruned stays pruned); NaN scores rank lowest;
    ties go to the lower index. ``k[r]`` may not exceed ``current[r].sum()``.
    """
    R, N = scores.shape
    k = torch.as_tensor(k, device=scores.device).reshape(R, 1)
    current = current.to(torch.bool)
    if bool((k > current.sum(1, keepdim=True)).any()):
        raise ValueError("top-k asks for more entries than survive")
    s = torch.nan_to_num(scores.to(torch.float64), nan=-np.inf)
    order = torch.argsort(s, dim=1, descending=True, stable=True)
    # then surviving entries first, keeping the score order among them
    alive = torch.gather(current, 1, order)
    order = torch.gather(order, 1, torch.argsort((~alive).to(torch.int8), dim=1, stable=True))
    rank_keep = torch.arange(N, device=scores.device).unsqueeze(0) < k
    keep = torch.zeros(R, N, dtype=torch.bool, device=scores.device)
    keep.scatter_(1, order, rank_keep)
    return keep


def apportion(weights, totals, caps) -> np.ndarray:
    """Integer counts ``(R, L)`` proportional to ``weights`` with row sums ``totals``, each <= ``caps``.

    Real targets are found by water-filling (entries that would exceed their cap are set to it
    and the rest re-solved), then rounded by largest remainder, so the row sum is exact.
    ``weights``: ``(L,)`` or ``(R, L)`` non-negative; ``totals``: ``(R,)``; ``caps``: ``(L,)``
    or ``(R, L)``.
    """
    totals = np.asarray(totals, dtype=np.int64).reshape(-1)
    R = len(totals)
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (R, np.shape(weights)[-1])).copy()
    caps = np.broadcast_to(np.asarray(caps, dtype=np.int64), w.shape).copy()
    if (totals > caps.sum(1)).any():
        raise ValueError("budget exceeds the layers' capacity")
    if (totals < 0).any():
        raise ValueError("negative budget")
    out = np.zeros(w.shape, dtype=np.int64)
    for r in range(R):
        real = _water_fill(w[r], caps[r].astype(np.float64), float(totals[r]))
        base = np.minimum(np.floor(real + 1e-9).astype(np.int64), caps[r])
        rest = int(totals[r] - base.sum())
        frac = real - base
        for i in np.argsort(-frac, kind="stable"):
            if rest <= 0:
                break
            if base[i] < caps[r, i]:
                base[i] += 1
                rest -= 1
        i = 0
        while rest > 0:  # leftovers (only when fractions were all used up): fill by order
            if base[i] < caps[r, i]:
                base[i] += 1
                rest -= 1
            i = (i + 1) % len(base)
        out[r] = base
    return out


def _water_fill(w: np.ndarray, caps: np.ndarray, total: float) -> np.ndarray:
    """Real x <= caps, x proportional to w on the uncapped entries, sum total."""
    x = np.zeros_like(w)
    free = (caps > 0) & (w > 0)
    remaining = total
    while True:
        if not free.any():
            break
        x[free] = w[free] * remaining / w[free].sum()
        over = free & (x > caps)
        if not over.any():
            break
        x[over] = caps[over]
        free &= ~over
        remaining = total - x[~free].sum()
    if not free.any() and x.sum() < total - 1e-9:  # zero weights must take the rest
        left = caps - x
        x += left * (total - x.sum()) / max(left.sum(), 1e-12)
    return x


def flow_repair(mask: list[torch.Tensor], counts: torch.Tensor, generator_for) -> list[torch.Tensor]:
    """Give every unit of every layer with no input or no output one random connection, then
    remove the same number of random *redundant* weights so each replica keeps ``counts[r]``.

    ``mask``: boolean ``(R, out, in, ...)`` per layer; a unit's input is a row (output unit) and
    its output a column (input unit) of the layer's mask (for conv layers, whole kernels:
    a row is an output channel, a column an input channel). A weight is redundant when both
    of its units keep another connection in that layer. ``generator_for(r)``: replica ``r``'s
    ``torch.Generator``. Returns new masks (the inputs are not modified).
    """
    mask = [m.clone() for m in mask]
    R = mask[0].shape[0]
    for r in range(R):
        g = generator_for(r)
        added = []
        for li, m in enumerate(mask):
            mr = m[r]
            chan = mr.reshape(mr.shape[0], mr.shape[1], -1).any(-1)  # (out, in)
            for axis in (1, 0):  # rows without inputs, then columns without outputs
                empty = (~chan.any(dim=axis)).nonzero().flatten().tolist()
                for u in empty:
                    other = chan.shape[axis]
                    v = int(torch.randint(other, (1,), generator=g))
                    o, i = (u, v) if axis == 1 else (v, u)
                    k = int(torch.randint(int(np.prod(mr.shape[2:])) or 1, (1,), generator=g))
                    flat = mr.reshape(mr.shape[0], mr.shape[1], -1)
                    if not bool(flat[o, i, k]):
                        flat[o, i, k] = True
                        added.append(li)
                    chan = flat.any(-1)
        surplus = int(sum(int(m[r].sum()) for m in mask) - int(counts[r]))
        while surplus > 0:
            cands = []
            for li, m in enumerate(mask):
                flat = m[r].reshape(m[r].shape[0], m[r].shape[1], -1)
                deg_out = flat.any(-1).sum(1)  # per output unit: inputs
                deg_in = flat.any(-1).sum(0)   # per input unit: outputs
                nz = flat.nonzero()
                for o, i, k in nz.tolist():
                    per_kernel = int(flat[o, i].sum())
                    if per_kernel > 1 or (deg_out[o] > 1 and deg_in[i] > 1):
                        cands.append((li, o, i, k))
            if not cands:  # nothing is redundant: drop any weight
                cands = [(li, *t) for li, m in enumerate(mask)
                         for t in m[r].reshape(m[r].shape[0], m[r].shape[1], -1).nonzero().tolist()]
            li, o, i, k = cands[int(torch.randint(len(cands), (1,), generator=g))]
            mask[li][r].reshape(mask[li][r].shape[0], mask[li][r].shape[1], -1)[o, i, k] = False
            surplus -= 1
    return mask


def sparsity_report(masks) -> list[dict]:
    """Per replica: weight nonzeros, density and per-layer counts of boolean masks ``(R, *shape)``
    (a JSON-ready summary)."""
    masks = [torch.as_tensor(m) != 0 for m in masks]
    R = masks[0].shape[0]
    out = []
    for r in range(R):
        layers = [{"shape": list(m.shape[1:]), "nnz": int(m[r].sum()), "numel": int(m[r].numel()),
                   "density": float(m[r].float().mean())} for m in masks]
        nnz, numel = sum(l["nnz"] for l in layers), sum(l["numel"] for l in layers)
        out.append({"weight_nnz": nnz, "numel": numel, "density": nnz / numel, "layers": layers})
    return out


def mask_overlap(a, b) -> torch.Tensor:
    """Per-replica Jaccard overlap ``|a & b| / |a | b|`` of two masks (lists of ``(R, *shape)``)."""
    a = [torch.as_tensor(m) != 0 for m in a]
    b = [torch.as_tensor(m) != 0 for m in b]
    R = a[0].shape[0]
    inter = sum((x & y).reshape(R, -1).sum(1) for x, y in zip(a, b))
    union = sum((x | y).reshape(R, -1).sum(1) for x, y in zip(a, b))
    return inter.double() / union.clamp(min=1).double()
