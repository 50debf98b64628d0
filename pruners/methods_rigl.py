"""RigL: dynamic sparse training (Evci, Gale, Menick, Castro & Elsen, "Rigging the Lottery:
Making All Tickets Winners", ICML 2020).

The network trains sparse from the start: a random mask of exactly F weights whose per-layer
counts follow ERK (``density_scheme``, exact counts by largest remainder, :mod:`pruners.density`),
drawn from each replica's own generator; then, every ``update_every`` (100) optimiser steps
until ``T_end = end_fraction`` (75%) of the run, each layer drops the
``floor(a_t n)`` smallest-``|w|`` of its ``n`` active weights, ``a_t = drop_fraction (1 +
cos(pi t / T_end)) / 2`` (``drop_fraction`` 0.3), and grows as many by the largest ``|dense
gradient|``: the gradient of the loss on the batch of the step just taken with respect to every
weight, as if the network were dense. Grown weights start at 0 with zero momentum. The
mechanics (counts, ties, what a dropped weight grown back keeps) are the ``dynamic`` procedure's:
:func:`pruners.procedures.update_masks`.

Details that differ from the paper's TensorFlow code, all documented there too: ties are broken
by position (the code adds 1e-5 noise to the drop scores); the first update comes after
``update_every`` steps (the code also updates at step 0); the update's batch also takes its
optimiser step (the code skips it) and the gradient is taken after that step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import DynamicConfig, Method, register


@dataclass(frozen=True)
class RigLConfig(DynamicConfig):
    """RigL: an ERK random mask, magnitude drops and dense-gradient growth per layer."""

    def __post_init__(self):
        super().__post_init__()
        if self.scope != "layer":
            raise ValueError("rigl keeps every layer's count: scope must be layer (the initial counts come "
                             "from --density-scheme)")


@register
class RigL(Method):
    name, Config, procedure = "rigl", RigLConfig, "dynamic"

    def scores(self, ctx):
        """The initial mask: uniform random scores from each replica's generator (with
        ``scope="layer"`` the exact per-layer counts come from the density scheme)."""
        return [torch.stack([torch.rand(l.shape, generator=ctx.generator(r)) for r in range(ctx.R)]).to(ctx.device)
                for l in ctx.layers]

    # drop_scores: the default |w|

    def grow_scores(self, ctx):
        """``|dL/dW|`` on the batch of the step just taken, every weight as if dense."""
        return [g.abs() for g in ctx.dense_gradients(*ctx.step_batch())]
