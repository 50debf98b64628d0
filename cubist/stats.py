"""Success over random inits: the one definition of "reached the target", and Wilson intervals.

A single 50-epoch run of a tiny network is a draw from its random init (Zhang & Papyan 2024 run
every configuration once, from its own init). A claim about a mask or an architecture is
therefore a success *rate* over independent inits, reported with its interval and the number of
runs behind it. Every layer of the package (search phases, pruner sweeps, report) uses these.
"""
from __future__ import annotations

import numpy as np


DEFAULT_TARGET = 0.95   # the paper's target train accuracy


def reached_target(train_acc, diverged, target: float):
    """A run reached ``target``: it did not diverge and its training accuracy is >= ``target``.

    Element-wise on arrays (NaN accuracies never reach); returns bool (array).
    """
    acc = np.asarray(train_acc, dtype=np.float64)
    out = ~np.asarray(diverged, dtype=bool) & (np.nan_to_num(acc, nan=-np.inf) >= target)
    return out if out.ndim else bool(out)


def wilson_interval(successes, runs, confidence: float = 0.95):
    """Wilson score interval ``(low, high)`` of a binomial rate, element-wise.

    ``low = (p + z^2/2n - z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` (``high`` with ``+``),
    ``p = successes / runs``, ``z`` the two-sided normal quantile of ``confidence``. Unlike the
    normal approximation it stays inside [0, 1] and is informative at 0 of n (``high`` =
    ``z^2 / (n + z^2)``; exactly 0 at 0 of n and 1 at n of n). ``runs = 0`` gives ``(0, 1)``.
    """
    from scipy.stats import norm

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(runs, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("successes must lie in 0..runs")
    z = float(norm.ppf(0.5 + confidence / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, k / np.where(n > 0, n, 1), 0.0)
        nn = np.where(n > 0, n, 1)
        centre = p + z * z / (2 * nn)
        half = z * np.sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn))
        denom = 1 + z * z / nn
        low = np.where((n > 0) & (k > 0), np.clip((centre - half) / denom, 0, 1), 0.0)
        high = np.where((n > 0) & (k < n), np.clip((centre + half) / denom, 0, 1), 1.0)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high
