"""Per-layer densities for a global density ``d`` (Gadhikar, Mukherjee & Burkholz, "Why Random
Pruning Is All We Need to Start Sparse", ICML 2023; ERK from Evci et al., RigL, ICML 2020).

``n_l`` = weights of layer l, ``N = sum n_l``, ``L`` layers, layers numbered 1..L from input to
output. Schemes (``ALGORITHMS.md`` §4):

- ``uniform``: ``p_l = d``.
- ``er``: ``p_l ∝ (out_l + in_l) / n_l`` (Erdős–Rényi; kernel dims ignored);
- ``erk``: ``p_l ∝ (sum of all shape dims) / n_l`` (ER-kernel). For both, scaled so the total is
  ``d N``; layers that would exceed density 1 are set dense and the rest re-solved (RigL).
- ``balanced``: every layer keeps ``d N / L`` weights, capped at ``n_l`` (the excess of capped
  layers is shared equally by the others, so the total stays ``d N``).
- ``pyramidal``: ``p_l = r^l``, ``r`` in (0, 1] the root of ``sum_l n_l r^l = d N`` (bisection).

:func:`densities` gives the real densities; :func:`layer_counts` exact integer counts per layer
(largest-remainder rounding of the real targets; each row sums exactly to the budget).
"""
from __future__ import annotations

import math

import numpy as np

from .masking import apportion

SCHEMES = ("uniform", "er", "erk", "balanced", "pyramidal")


def _sizes(shapes) -> np.ndarray:
    return np.array([math.prod(s) for s in shapes], dtype=np.float64)


def pyramidal_ratio(sizes, target: float, tol: float = 1e-13) -> float:
    """The ``r`` in (0, 1] with ``sum_l sizes[l] * r^(l+1) = target`` (bisection; monotone in r)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    powers = np.arange(1, len(sizes) + 1)
    if not 0 < target <= sizes.sum():
        raise ValueError(f"target {target} outside (0, {sizes.sum()}]")
    f = lambda r: float((sizes * r ** powers).sum()) - target  # noqa: E731
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < tol:
            break
    return (lo + hi) / 2


def _raw_weights(scheme: str, shapes) -> np.ndarray:
    """Unnormalised per-weight density weights for er / erk."""
    sizes = _sizes(shapes)
    if scheme == "er":
        return np.array([(s[0] + s[1]) for s in shapes], dtype=np.float64) / sizes
    if scheme == "erk":
        return np.array([sum(s) for s in shapes], dtype=np.float64) / sizes
    raise ValueError(scheme)


def densities(scheme: str, shapes, d: float) -> np.ndarray:
    """Real per-layer densities ``p_l`` for global density ``d`` (``sum p_l n_l = d N``)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown density scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    if not 0 < d <= 1:
        raise ValueError(f"density must be in (0, 1], got {d}")
    sizes = _sizes(shapes)
    total = d * sizes.sum()
    if scheme == "uniform":
        return np.full(len(sizes), d)
    if scheme == "pyramidal":
        r = pyramidal_ratio(sizes, total)
        return r ** np.arange(1, len(sizes) + 1)
    if scheme == "balanced":
        weights = np.ones(len(sizes))  # equal counts: count weights, not densities
        counts = _fill(weights, sizes, total)
        return counts / sizes
    raw = _raw_weights(scheme, shapes)  # densities ∝ raw; counts ∝ raw * n_l
    return _fill(raw * sizes, sizes, total) / sizes


def _fill(count_weights, caps, total) -> np.ndarray:
    """Real counts ∝ count_weights, capped at caps (capped layers dense, the rest re-solved)."""
    x = np.zeros(len(caps))
    free = np.ones(len(caps), dtype=bool)
    while True:
        remaining = total - x[~free].sum()
        x[free] = count_weights[free] * remaining / count_weights[free].sum()
        over = free & (x > caps + 1e-12)
        if not over.any():
            return x
        x[over] = caps[over]
        free &= ~over
        if not free.any():
            return x


def layer_counts(scheme: str, shapes, budgets, caps=None) -> np.ndarray:
    """Exact integer weights per layer ``(R, L)`` for per-replica budgets ``(R,)``.

    The real counts ``p_l n_l`` of :func:`densities` (at ``d = budget / N``) are rounded by
    largest remainder so each row sums to its budget. ``caps`` ``(R, L)`` (e.g. the weights
    that survive so far) bound the counts; real targets above a cap are re-solved over the
    other layers.
    """
    sizes = _sizes(shapes)
    budgets = np.asarray(budgets, dtype=np.int64).reshape(-1)
    caps = np.broadcast_to(sizes.astype(np.int64) if caps is None else np.asarray(caps, dtype=np.int64),
                           (len(budgets), len(sizes)))
    N = sizes.sum()
    out = np.zeros((len(budgets), len(sizes)), dtype=np.int64)
    for r, b in enumerate(budgets):
        if b == 0:
            continue
        real = densities(scheme, shapes, float(b) / N) * sizes
        out[r] = apportion(real, [b], caps[r])[0]
    return out
