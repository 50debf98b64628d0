"""Pruning schedules: how many weights survive after each pruning event.

All functions take the prunable weights ``N`` and per-replica final counts ``F`` (``(R,)``) and
return integer counts; the last event always lands exactly on ``F``, and counts never increase.

- :func:`one_shot`: ``[F]``.
- :func:`geometric`: IMP / LRR rounds keeping ``(1 - rate)`` of the survivors each round
  (Frankle & Carbin 2019; Renda et al. 2020) until ``F``: round k keeps ``max(F, round(N (1-rate)^k))``.
- :func:`exponential`: ``rounds`` events at ``N (F/N)^(k/rounds)`` (SynFlow, Tanaka et al. 2020).
- :func:`cubic`: ``n_t = F + (N - F)(1 - t/T)^3`` for ``t = 1..T`` (Zhu & Gupta 2017), and
  :func:`event_steps`: the optimiser steps at which its ``T`` events happen.
"""
from __future__ import annotations

import math

import numpy as np


def _F(F):
    return np.asarray(F, dtype=np.int64).reshape(-1)


def one_shot(N: int, F) -> np.ndarray:
    """``(1, R)``: one event straight to ``F``."""
    return _F(F)[None, :]


def geometric_rounds(N: int, F: int, rate: float) -> int:
    """Rounds of ``rate`` pruning needed to go from ``N`` to ``F`` (the last one clipped to ``F``)."""
    if F >= N:
        return 0
    return max(1, math.ceil(math.log(F / N) / math.log(1 - rate) - 1e-9))


def geometric(N: int, F, rate: float) -> np.ndarray:
    """``(K, R)``: counts after each of ``K`` rounds; ``K`` must be equal for all replicas
    (group replicas by :func:`geometric_rounds` first)."""
    F = _F(F)
    ks = {geometric_rounds(N, int(f), rate) for f in F}
    if len(ks) != 1:
        raise ValueError(f"replicas need different numbers of rounds {sorted(ks)}; group them first")
    K = ks.pop()
    out = np.array([[max(int(f), int(round(N * (1 - rate) ** k))) for f in F] for k in range(1, K + 1)],
                   dtype=np.int64).reshape(K, len(F))
    out[-1] = F
    return out


def exponential(N: int, F, rounds: int) -> np.ndarray:
    """``(rounds, R)``: ``N (F/N)^(k/rounds)`` for ``k = 1..rounds``, rounded, monotone, ending at ``F``."""
    F = _F(F)
    k = np.arange(1, rounds + 1)[:, None]
    out = np.round(N * (F[None, :] / N) ** (k / rounds)).astype(np.int64)
    out = np.maximum(out, F[None, :])
    out[-1] = F
    return np.minimum.accumulate(out, axis=0)


def cubic(N: int, F, T: int) -> np.ndarray:
    """``(T, R)``: ``ceil(F + (N - F)(1 - t/T)^3)`` for ``t = 1..T`` (ends at ``F``)."""
    F = _F(F)
    t = np.arange(1, T + 1)[:, None]
    out = np.ceil(F[None, :] + (N - F[None, :]) * (1 - t / T) ** 3 - 1e-9).astype(np.int64)
    out[-1] = F
    return out


def event_steps(total_steps: int, T: int, start_frac: float, end_frac: float) -> np.ndarray:
    """The optimiser steps (1-based counts of steps done) at which the ``T`` cubic events happen:
    evenly spaced from ``start_frac`` to ``end_frac`` of training, the first one interval after
    the start. Distinct when there are enough steps."""
    start, end = start_frac * total_steps, end_frac * total_steps
    steps = np.round(start + (end - start) * np.arange(1, T + 1) / T).astype(np.int64)
    steps = np.clip(steps, 1, total_steps)
    for i in range(1, T):  # keep them strictly increasing where possible
        if steps[i] <= steps[i - 1]:
            steps[i] = min(steps[i - 1] + 1, total_steps)
    return steps
