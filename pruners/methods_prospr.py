"""ProsPr: pruning at initialisation by meta-gradients through the first steps of training
(Alizadeh, Tailor, Zintgraf, van Amersfoort, Farquhar, Lane & Gal, "Prospect Pruning: Finding
Trainable Weights at Initialization using Meta-Gradients", ICLR 2022).

Every prunable weight gets a multiplier ``c`` (all ones, differentiable): the network starts
from ``theta_0 * c`` (the masked init; every parameter of the model takes part), takes
``inner_steps`` (3) SGD steps with the run's learning rate (its first epoch's), momentum
``inner_momentum`` (0.9) and, by default, the run's weight decay (PyTorch semantics; ProsPr's
code uses none: ``--no-inner-weight-decay``), keeping the whole graph (``create_graph``); the
loss after them is differentiated with respect to ``c`` and the top F by ``|dL/dc|`` are kept.
As ProsPr's code, step ``i`` uses batch ``i`` of the run's data order and the loss after the
steps a further batch, number ``inner_steps`` (:func:`pruners.scoring.run_batch`, ``score_batch``
points each). ProsPr's code detaches the first momentum buffer (``torch.clone(grad).detach()``),
which drops the first step's gradient from the meta-gradient; here every step is differentiated
(the paper's meta-gradient) unless ``detach_first_momentum`` is set. ``inner_steps=0`` is SNIP
on the first batch.

Tested in ``tests/test_methods_force_prospr.py``: the meta-gradient against central finite
differences (float64) and against an unrolled computation in plain PyTorch, ``inner_steps=0``
against SNIP, exact budgets on MLP replicas and a CNN.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import AtInitConfig, Method, PruneContext, register
from .scoring import loss_with, own, run_batch


@dataclass(frozen=True)
class ProsPrConfig(AtInitConfig):
    """ProsPr: ``inner_steps`` differentiable SGD steps at init, then keep the top ``|dL/dc|``."""

    inner_steps: int = field(default=3, metadata={"help": "SGD steps differentiated through (ProsPr: 3)"})
    inner_momentum: float = field(default=0.9, metadata={"help": "momentum of the inner SGD steps"})
    inner_weight_decay: bool = field(default=True, metadata={
        "help": "apply the run's weight decay in the inner steps (ProsPr's code applies none)"})
    detach_first_momentum: bool = field(default=False, metadata={
        "help": "treat the first inner step's momentum buffer as a constant, as ProsPr's code does"})
    score_batch: int = field(default=128, metadata={
        "help": "points per batch; inner step i uses batch i of the run's data order, the meta-loss the next"})

    def __post_init__(self):
        super().__post_init__()
        if self.inner_steps < 0:
            raise ValueError(f"inner_steps must be >= 0, got {self.inner_steps}")
        if not 0 <= self.inner_momentum < 1:
            raise ValueError(f"inner_momentum must be in [0, 1), got {self.inner_momentum}")
        if self.score_batch < 1:
            raise ValueError(f"score_batch must be >= 1, got {self.score_batch}")


def meta_loss(ctx: PruneContext, config: ProsPrConfig, multipliers: list[torch.Tensor]) -> torch.Tensor:
    """(R,) loss after ``config.inner_steps`` SGD steps from ``theta_0 * c``, as a differentiable
    function of the multipliers ``c`` (one ``(R, *shape)`` tensor per prunable layer). The
    model's own parameters are not changed."""
    tr = ctx.trainer
    params = [p for p in ctx.model.parameters() if p.requires_grad]
    mult = {id(l.param): own(l, c) for l, c in zip(ctx.layers, multipliers)}
    fast = [p * mult[id(p)] if id(p) in mult else p for p in params]
    lr = tr.lrs(0, tr.epochs)  # (R,): the run's learning rate at its first step
    wd = tr.weight_decay if config.inner_weight_decay else 0.0

    def scaled(v, p):  # lr[r] * v for replica r
        return v * (lr.view(-1, *([1] * (p.dim() - 1))) if tr.batched else lr[0])

    bufs = [None] * len(fast)
    for i in range(config.inner_steps):
        x, y = run_batch(ctx, i, config.score_batch)
        loss = loss_with(ctx, list(zip(params, fast)), x, y).sum()
        grads = torch.autograd.grad(loss, fast, create_graph=True, allow_unused=True)
        step = []
        for j, (p, g) in enumerate(zip(fast, grads)):
            g = torch.zeros_like(p) if g is None else g
            if wd:
                g = g + wd * p
            if config.inner_momentum:
                if bufs[j] is None:
                    bufs[j] = g.detach() if config.detach_first_momentum else g
                else:
                    bufs[j] = config.inner_momentum * bufs[j] + g
                g = bufs[j]
            step.append(p - scaled(g, p))
        fast = step
    x, y = run_batch(ctx, config.inner_steps, config.score_batch)
    return loss_with(ctx, list(zip(params, fast)), x, y)


@register
class ProsPr(Method):
    name, Config, procedure = "prospr", ProsPrConfig, "at_init"

    def scores(self, ctx):
        c = [torch.ones(l.mask.shape, dtype=l.param.dtype, device=ctx.device, requires_grad=True) for l in ctx.layers]
        grads = torch.autograd.grad(meta_loss(ctx, self.config, c).sum(), c, allow_unused=True)
        return [torch.zeros_like(m) if g is None else g.abs() for m, g in zip(c, grads)]
