"""The non-reparametrised pruning methods audited against the sparsest spiral MLPs.

- ``imp``: iterative magnitude pruning, global over the prunable layers, ``rate`` (20%) of the
  survivors per round, survivors rewound to init (lottery tickets, Frankle & Carbin, ICLR 2019)
  or to optimiser step k (weight rewinding, Frankle, Dziugaite, Roy & Carbin, ICML 2020); the
  optimiser and the LR schedule are reset each round.
- ``lrr``: learning-rate rewinding (Renda, Frankle & Carbin, ICLR 2020): the same cycles, but
  weights and momentum are kept and only the LR schedule restarts.
- ``gmp``: gradual magnitude pruning (Zhu & Gupta 2017) during one run on the cubic schedule;
  this is what the sparsest paper (Zhang & Papyan, ICML 2024) calls "imp".
- ``random``: random pruning at init with per-layer densities (Gadhikar, Mukherjee & Burkholz,
  ICML 2023): exact counts per layer via top-k of random scores, optional flow repair.
- ``snip``: ``|w * dL/dw|`` on one batch (Lee, Ajanthan & Torr, ICLR 2019).
- ``grasp``: keep the highest ``w * (H g)`` (Wang, Zhang & Grosse, ICLR 2020), i.e. remove the
  highest ``-w * (H g)``; logits divided by a temperature (200, as in GraSP's code).
- ``synflow``: data-free, ``|w * dR/dw|`` with ``R`` the summed output of the network whose
  parameters are ``|w|`` on an all-ones input, ``rounds`` (100) exponential rounds (Tanaka,
  Kunin, Yamins & Ganguli, NeurIPS 2020).

``snip`` and ``grasp`` take ``reinit=xavier_normal``: before scoring, every weight layer is
re-initialised with ``torch.nn.init.xavier_normal_`` (drawn from the replica's generator), as the
sparsest paper does in its random-init runs; the pruned network is then trained from those
weights, masked. Biases keep the run's init.

Uncertain details are options recorded in each row's ``params`` (the SNIP/GraSP batch size, the
GMP event window, SynFlow's float64 scoring, ``reinit``). Run ids leave ``reinit`` out at
``none`` (:data:`cubist.store.OMITTED_AT_DEFAULT`), so rows stored before it existed keep theirs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import AtInitConfig, CyclesConfig, GradualConfig, Method, PruneContext, register
from .masking import flow_repair


def _magnitudes(ctx: PruneContext) -> list[torch.Tensor]:
    return [l.weight().detach().abs() for l in ctx.layers]


def _raw_params(ctx: PruneContext) -> list[torch.Tensor]:
    return [l.param for l in ctx.layers]


# -- magnitude -----------------------------------------------------------------------------
@dataclass(frozen=True)
class IMPConfig(CyclesConfig):
    """IMP: ``rewind`` init (lottery tickets) or step (weight rewinding to ``rewind_step``);
    ``rewind_step > 0`` alone implies ``rewind=step``."""

    def __post_init__(self):
        if self.rewind == "init" and self.rewind_step > 0:
            object.__setattr__(self, "rewind", "step")
        super().__post_init__()
        if self.rewind == "lr":
            raise ValueError("imp rewinds weights (init or step); use the lrr method for rewind=lr")


@dataclass(frozen=True)
class LRRConfig(CyclesConfig):
    """LRR: cycles that keep weights and momentum and restart only the LR schedule."""

    rewind: str = field(default="lr", metadata={"help": "lr (fixed for LRR: restart only the LR schedule)"})

    def __post_init__(self):
        super().__post_init__()
        if self.rewind != "lr" or self.rewind_step:
            raise ValueError("lrr keeps the weights: rewind must be lr and rewind_step 0")


class _ByMagnitude(Method):
    """Scores every weight by its magnitude |w| (IMP, LRR, GMP differ only in their procedure)."""

    def scores(self, ctx):
        return _magnitudes(ctx)


@register
class IMP(_ByMagnitude):
    name, Config, procedure = "imp", IMPConfig, "cycles"


@register
class LRR(_ByMagnitude):
    name, Config, procedure = "lrr", LRRConfig, "cycles"


@dataclass(frozen=True)
class GMPConfig(GradualConfig):
    """GMP: ``prune_steps`` magnitude events on the cubic schedule within one run."""


@register
class GMP(_ByMagnitude):
    name, Config, procedure = "gmp", GMPConfig, "gradual"


# -- random ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RandomConfig(AtInitConfig):
    """Random pruning at init; per-layer counts from ``density_scheme`` (scope=layer)."""

    scope: str = field(default="layer", metadata={
        "help": "layer: exact per-layer counts from --density-scheme; global: one random top-k over all layers"})
    density_scheme: str = field(default="erk", metadata={
        "help": "per-layer densities: uniform | er | erk | balanced | pyramidal"})
    flow_repair: bool = field(default=False, metadata={
        "help": "give every unit without input or output one random connection, then drop as many "
                "random redundant weights (counts stay exact)"})


@register
class RandomPruning(Method):
    name, Config, procedure = "random", RandomConfig, "at_init"

    def scores(self, ctx):
        out = []
        for l in ctx.layers:
            s = torch.stack([torch.rand(l.shape, generator=ctx.generator(r)) for r in range(ctx.R)])
            out.append(s.to(ctx.device))
        return out

    def after_prune(self, ctx):
        if self.config.flow_repair:
            masks = [l.mask != 0 for l in ctx.layers]
            ctx.set_masks(flow_repair([m.cpu() for m in masks], ctx.budgets(), ctx.generator))


# -- SNIP and GraSP --------------------------------------------------------------------------
REINITS = ("none", "xavier_normal")


@dataclass(frozen=True)
class SNIPConfig(AtInitConfig):
    """SNIP: connection sensitivity on one batch of ``score_batch`` points (the run's first)."""

    score_batch: int = field(default=128, metadata={
        "help": "points in the scoring batch: the first of the run's epoch-0 order (uncertain; SNIP used one batch)"})
    reinit: str = field(default="none", metadata={
        "help": "re-initialise the weights before scoring (and train from them): none | xavier_normal "
                "(the sparsest paper's random-init runs)", "choices": REINITS})

    def __post_init__(self):
        super().__post_init__()
        if self.score_batch < 1:
            raise ValueError(f"score_batch must be >= 1, got {self.score_batch}")
        if self.reinit not in REINITS:
            raise ValueError(f"unknown reinit {self.reinit!r}; choose from {', '.join(REINITS)}")


@torch.no_grad()
def reinit_weights(ctx: PruneContext, how: str) -> None:
    """Re-initialise the weights of every maskable layer, replica by replica (``how`` in
    :data:`REINITS`); each replica draws from ``ctx.generator(r)`` on the CPU, layer by layer, so
    a batched run equals the same runs done one by one. Biases are left as they are."""
    if how == "none":
        return
    for l in ctx.all_layers:
        w = l.rview(l.param)
        for r in range(ctx.R):
            fresh = torch.empty(l.shape)
            torch.nn.init.xavier_normal_(fresh, generator=ctx.generator(r))
            w[r].copy_(fresh)
        l.zero_masked_()


def connection_sensitivity(ctx: PruneContext, x, y) -> list[torch.Tensor]:
    """SNIP's ``|w * dL/dw|`` of the current (masked) network on the batch ``(x, y)``."""
    params = _raw_params(ctx)
    grads = torch.autograd.grad(ctx.loss(x, y).sum(), params)
    return [(l.rview(p.detach()) * l.rview(g)).abs() for l, p, g in zip(ctx.layers, params, grads)]


@register
class SNIP(Method):
    name, Config, procedure = "snip", SNIPConfig, "at_init"

    def setup(self, ctx):
        reinit_weights(ctx, self.config.reinit)

    def scores(self, ctx):
        return connection_sensitivity(ctx, *ctx.batch(self.config.score_batch))


@dataclass(frozen=True)
class GraSPConfig(SNIPConfig):
    """GraSP: Hessian-gradient product on one batch, logits divided by ``temperature``."""

    temperature: float = field(default=200.0, metadata={"help": "logit temperature of the scoring loss (GraSP's code: 200)"})

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


@register
class GraSP(Method):
    name, Config, procedure = "grasp", GraSPConfig, "at_init"

    def setup(self, ctx):
        reinit_weights(ctx, self.config.reinit)

    def scores(self, ctx):
        x, y = ctx.batch(self.config.score_batch)
        T = self.config.temperature
        params = _raw_params(ctx)
        g = torch.autograd.grad(ctx.loss(x, y, T).sum(), params)
        g2 = torch.autograd.grad(ctx.loss(x, y, T).sum(), params, create_graph=True)
        z = sum((a.detach() * b).sum() for a, b in zip(g, g2))
        hg = torch.autograd.grad(z, params, allow_unused=True)
        hg = [torch.zeros_like(p) if h is None else h for p, h in zip(params, hg)]
        # keep the highest w * Hg (= remove the highest -w * Hg)
        return [l.rview(p.detach()) * l.rview(h) for l, p, h in zip(ctx.layers, params, hg)]


# -- SynFlow ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SynFlowConfig(AtInitConfig):
    """SynFlow: data-free, ``rounds`` exponential rounds at init."""

    rounds: int = field(default=100, metadata={"help": "pruning rounds at init (exponential schedule)"})
    float64: bool = field(default=True, metadata={"help": "score in float64 (as SynFlow's code; avoids overflow)"})


@register
class SynFlow(Method):
    name, Config, procedure = "synflow", SynFlowConfig, "at_init"

    def scores(self, ctx):
        model = ctx.model
        params = list(model.parameters())
        saved = [p.detach().clone() for p in params]
        was_training = model.training
        dtype = torch.float64 if self.config.float64 else torch.float32
        model.eval()
        try:
            if dtype != torch.float32:
                model.to(dtype)
            with torch.no_grad():
                for p in params:
                    p.abs_()
            x = ctx.input_ones().to(dtype)
            out = ctx.trainer.replica_outputs(x)
            raw = _raw_params(ctx)
            grads = torch.autograd.grad(out.sum(), raw, allow_unused=True)
            scores = [(l.rview(p.detach()) * (0 if g is None else l.rview(g))).abs().float()
                      for l, p, g in zip(ctx.layers, raw, grads)]
        finally:
            model.to(torch.float32)
            with torch.no_grad():
                for p, s in zip(params, saved):
                    p.copy_(s)
            model.train(was_training)
        return scores
