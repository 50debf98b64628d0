"""FORCE and Iter-SNIP: progressive pruning at initialisation (de Jorge, Sanyal, Behl, Torr,
Rogez & Dokania, "Progressive Skeletonization: Trimming more fat from a network at
initialization", ICLR 2021; Iter-SNIP is that paper's baseline).

Both prune at init in ``rounds`` (10) steps on the at_init procedure's exponential schedule:
after step ``x`` (0-based) ``round(N (F/N)^((x+1)/rounds))`` weights survive, exactly ``F``
after the last (:func:`pruners.schedules.exponential`). That is FORCE's keep fraction
``(F/N)^((x+1)/10)``; FORCE's code floors the count (``int(N * keep)``), so its intermediate
counts can be one lower, and its last one can fall one short of F. Step ``x`` scores on batch
``x`` of the run's data order (:func:`pruners.scoring.run_batch`: points ``x*B .. (x+1)*B - 1``
of its epoch-0 order for ``score_batch`` ``B`` = 128), a fresh batch per step as FORCE's code
(a new data-loader iterator per step).

- ``itersnip``: SNIP's ``|theta * dL/dtheta|`` of the current masked network; pruned weights
  stay pruned. With ``rounds=1`` it is SNIP.
- ``force``: ``|theta_0 * g|`` with ``g`` the gradient of the loss with respect to the
  effective weights at ``theta_0 * m`` (``m`` the current mask): pruned weights still get a
  gradient, and every step chooses among all weights, so a weight pruned earlier can come back.
  As in FORCE's code each step starts again from the dense init: the scores reopen every weight
  (``ctx.set_masks`` of all ones) before the shared top-k runs, and after each prune the
  network is set back to ``theta_0 * m`` (its weights and biases). The gradient is taken at the
  network of mask ``m`` as this framework defines it: the bias of a hidden unit without outgoing
  weight is masked (FORCE's code masks no bias). The weights pruned at some step that are kept
  at the end are recorded as ``regrown`` in the rows' metrics.

Tested in ``tests/test_methods_force_prospr.py``: one step against plain PyTorch by hand,
``itersnip`` with one round against SNIP, a constructed case where FORCE regrows a weight and
Iter-SNIP cannot, the counts per step, exact budgets on MLP replicas and a CNN.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import AtInitConfig, Method, register
from .methods import connection_sensitivity
from .scoring import loss_with, own, run_batch


@dataclass(frozen=True)
class ForceConfig(AtInitConfig):
    """FORCE: ``rounds`` progressive steps at init, one fresh batch of ``score_batch`` points each."""

    rounds: int = field(default=10, metadata={"help": "pruning rounds at init (exponential schedule)"})
    score_batch: int = field(default=128, metadata={
        "help": "points in the scoring batch; step x uses batch x of the run's data order"})

    def __post_init__(self):
        super().__post_init__()
        if self.score_batch < 1:
            raise ValueError(f"score_batch must be >= 1, got {self.score_batch}")


@dataclass(frozen=True)
class IterSNIPConfig(ForceConfig):
    """Iter-SNIP: SNIP in ``rounds`` progressive steps at init, one fresh batch each."""


@register
class IterSNIP(Method):
    name, Config, procedure = "itersnip", IterSNIPConfig, "at_init"

    def scores(self, ctx):
        return connection_sensitivity(ctx, *run_batch(ctx, ctx.round, self.config.score_batch))


@register
class Force(Method):
    name, Config, procedure = "force", ForceConfig, "at_init"

    def setup(self, ctx):
        # theta_0: the raw weights and biases of every maskable layer, before any prune
        self._init = [(l.param.detach().clone(), None if l.bias_param is None else l.bias_param.detach().clone())
                      for l in ctx.all_layers]
        self._pruned = [torch.zeros(l.mask.shape, dtype=torch.bool, device=ctx.device) for l in ctx.layers]

    def scores(self, ctx):
        if not hasattr(self, "_init"):
            raise RuntimeError("force scores need setup() first (the procedure calls it)")
        x, y = run_batch(ctx, ctx.round, self.config.score_batch)
        masks = [l.mask.detach().clone().requires_grad_(True) for l in ctx.layers]
        theta0 = {id(l): l.rview(w) for l, (w, _) in zip(ctx.all_layers, self._init)}
        replace = []
        for l, m in zip(ctx.layers, masks):  # effective weight theta_0 * m, the mask buffer out of the way
            replace += [(l.param, own(l, theta0[id(l)] * m)), (l.module.weight_mask, torch.ones_like(l.module.weight_mask))]
        grads = torch.autograd.grad(loss_with(ctx, replace, x, y).sum(), masks)
        # d loss / d m = theta_0 * g(theta_0 * m); every weight may be chosen again
        ctx.set_masks([torch.ones(m.shape, dtype=torch.bool, device=ctx.device) for m in masks])
        return [g.abs() for g in grads]

    @torch.no_grad()
    def after_prune(self, ctx):
        for l, (w, b) in zip(ctx.all_layers, self._init):
            l.param.copy_(w)
            if b is not None:
                l.bias_param.copy_(b)
            l.zero_masked_()
        kept = [l.mask != 0 for l in ctx.layers]
        regrown = sum((k & p).reshape(ctx.R, -1).sum(1).cpu() for k, p in zip(kept, self._pruned))
        self._pruned = [p | ~k for k, p in zip(kept, self._pruned)]
        ctx.record("regrown", regrown.tolist())
