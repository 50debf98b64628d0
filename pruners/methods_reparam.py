"""Reparametrised sparsification methods: PILoT, spred, STR and DWF (and PILoT inside IMP / LRR).

All four train a reparametrised network (:mod:`pruners.reparam`) with a method-specific
regulariser, then fold the factors back into one plain weight (:meth:`Method.finalize`),
report the sparsity the method reached by itself ("natural" sparsity), and prune the folded
weights by magnitude to the exact target count (procedure ``after_training``; optional
fine-tuning with ``--finetune-epochs``).

- ``pilot``: Jacobs & Burkholz, "Mask in the Mirror: Implicit Sparsification", ICLR 2025.
  ``x = m * w`` from PILoT's init (``m^2 - w^2 = beta``), loss ``f(m*w) + alpha_k (||m||^2 +
  ||w||^2)``, ``alpha_k`` by their Algorithm 1 (:func:`pilot_alpha_update`).
- ``spred``: Ziyin & Wang, "spred: Solving L1 Penalty with SGD", ICML 2023 (PILoT's baseline):
  ``x = u * v``, balanced init ``u = |x0|^(1/2)``, ``v = sign(x0) |x0|^(1/2)``, constant L2 decay
  ``lambda`` on ``u, v`` (at balance the L1 penalty ``lambda ||x||_1``).
- ``str``: Kusupati et al., "Soft Threshold Weight Reparameterization for Learnable Sparsity",
  ICML 2020 (PILoT's baseline): ``x = sign(W) relu(|W| - sigmoid(s_l))``, weight decay on ``W``
  and ``s``.
- ``dwf``: Kolb, Weber, Bischl & Ruegamer, "Deep Weight Factorization: Sparse Learning Through
  the Lens of Artificial Symmetries", ICLR 2025: ``x = w_1 * ... * w_D``, loss ``L + (lambda/D)
  sum_d ||w_d||^2`` (an ``L_{2/D}`` penalty on ``x`` at optima; D = 2 is spred's objective);
  their init (reconstructed, see :func:`pruners.reparam.dwf_bounds`). Train it with
  ``--schedules cosine`` and a large learning rate, as the paper does.
- ``imp+pilot`` / ``lrr+pilot``: PILoT training in every round of IMP (rewind to init: the
  factors return to PILoT's init) or LRR (factors and momentum kept, LR schedule restarted);
  rounds prune the folded ``|m * w|`` globally; Algorithm 1 restarts with every round's
  training call (in :meth:`Method.before_train`: ``alpha_0``, K from that call's starting L1).
  The factors stay installed after the last round (the network computes with ``m * w * mask``).

Regularisers: each method's own regulariser is the only decay its factors get. The trainer
applies the protocol's weight decay to every trainable tensor; for the factors it is cancelled
exactly inside :meth:`ReparamMethod.penalty` (adding ``-wd/2 ||factor||^2`` to the loss cancels
``+wd * factor`` in the gradient, in the SGD semantics of :mod:`pruners.optim`). Biases and
layers that are not reparametrised keep the protocol's decay.

Uncertain details are options recorded in every row's ``params`` (defaults and why):

- PILoT ``pilot_update`` (default ``step``): whether Algorithm 1's ``k`` is an optimiser step
  or an epoch. With ``delta = 1.01`` only per-step updates let ``alpha`` move by orders of
  magnitude and die out (``alpha_T <= alpha_0``) within 50 epochs; per epoch it would change by
  at most 1.01^25. "Train accuracy" per step is measured on a fixed probe of ``pilot_probe``
  training points (one extra forward pass per step; the same points for every replica, drawn
  once from a fixed seed), per epoch it is the epoch's running accuracy. A drop is a strict
  decrease; the first comparison is against the accuracy at the start of the call (step) or
  never counts as a drop (epoch).
- PILoT ``K``: ``pilot_k`` times ``||x||_1`` of the prunable weights at the start of each
  training call, or ``pilot_k_abs`` when positive; the K used is recorded per replica in the
  row's metrics (``pilot_K``). K = 8000 in the paper was for ResNets (about 0.07 of ResNet-18's
  initial L1 under PyTorch's default init, more than ResNet-20's whole initial L1), so the ratio
  does not transfer. Default 0.5, from a small pilot run (spiral every 4th point, F = 40, 50
  epochs, cosine, lr 0.05/0.1/0.2, 4 seeds, no fine-tuning): at 0.1 alpha kept growing until
  most networks died (median accuracy 0.50-0.55); at 0.5 the median at lr 0.05 was 0.89.
  A network whose probe accuracy stays constant (ties count as "did not drop") can still be
  regularised to death: that is Algorithm 1 as written.
- PILoT ``alpha_0`` (``pilot_alpha0`` = 1e-5): small, because Algorithm 1 ends at or below
  ``alpha_0`` ("the regularisation dies out"), 25x below the protocol's decay (alpha = wd/2).
- DWF ``dwf_lambda`` = 5e-4 (the protocol's decay; D = 3). On the spiral the useful range is
  narrow: at 5e-4 no folded weight fell below 1e-6 in 50 epochs (no natural sparsity), at
  >= 2e-3 (lr 0.1, cosine, every 4th point) whole networks collapsed. Sweep it.
- DWF init: ``dwf_std`` (``fan_in``: the std of PyTorch's default init of the layer),
  ``dwf_eps_ratio`` = 0.25, ``dwf_match`` (``variance``: product std exactly s; ``none``: the
  literal truncation, product std ~0.78-0.86 s).
- STR ``str_init`` = -5 (initial threshold sigmoid(-5) = 0.0067) and ``str_wd`` = 5e-4: STR tunes
  both per target sparsity; there is no published value for the spiral.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .base import AfterTrainingConfig, CyclesConfig, EpochStats, Method, PruneContext, register
from .reparam import DWF_INIT_STDS, DWF_MATCHES, Factorisation, ReparamWeight, SoftThreshold, per_replica_sum

PILOT_UPDATES = ("step", "epoch")
PROBE_SEED = 0x9170  # the probe points: np.random.default_rng(PROBE_SEED).permutation(n)[:size]


# -- PILoT's schedule ---------------------------------------------------------------------------
def pilot_alpha_update(alpha, acc, prev_acc, l1, K, k: int, T: int, delta: float):
    """One step of PILoT's Algorithm 1 (element-wise over replicas).

    ``alpha * delta`` where the train accuracy did not drop (``acc >= prev_acc``), the L1 norm
    is still at least the budget (``l1 >= K``) and ``k <= T/2``; ``alpha / delta`` elsewhere.
    ``k`` counts from 1 (the update after the k-th step or epoch of ``T``).
    """
    alpha, acc, prev_acc, l1, K = (torch.as_tensor(v, dtype=torch.float64) for v in (alpha, acc, prev_acc, l1, K))
    grow = (acc >= prev_acc) & (l1 >= K) & torch.tensor(k <= T / 2)
    return torch.where(grow, alpha * delta, alpha / delta)


class PilotSchedule:
    """``alpha`` per replica through one training call of ``T`` updates (Algorithm 1)."""

    def __init__(self, alpha0: float, delta: float, K, T: int, prev_acc):
        self.alpha0, self.delta, self.T = float(alpha0), float(delta), int(T)
        self.K = torch.as_tensor(K, dtype=torch.float64).reshape(-1)
        self.alpha = torch.full_like(self.K, self.alpha0)
        self.prev_acc = torch.as_tensor(prev_acc, dtype=torch.float64).reshape(-1).expand_as(self.K).clone()
        self.k = 0
        self.alpha_max = self.alpha.clone()
        self.ups = torch.zeros_like(self.K, dtype=torch.int64)

    def update(self, acc, l1) -> torch.Tensor:
        """Record the accuracy and L1 norm after update ``k + 1``; returns the new ``alpha``."""
        self.k += 1
        acc = torch.as_tensor(acc, dtype=torch.float64).reshape(-1).cpu()
        new = pilot_alpha_update(self.alpha, acc, self.prev_acc, torch.as_tensor(l1).reshape(-1).cpu(), self.K,
                                 self.k, self.T, self.delta)
        self.ups += (new > self.alpha).to(torch.int64)
        self.alpha, self.prev_acc = new, acc
        self.alpha_max = torch.maximum(self.alpha_max, new)
        return new


# -- configs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReparamConfig(AfterTrainingConfig):
    """Options of every reparametrised method."""

    zero_tol: float = field(default=1e-6, metadata={
        "help": "natural sparsity: also count folded weights with |x| <= zero_tol as zero"})

    def __post_init__(self):
        super().__post_init__()
        if self.zero_tol < 0:
            raise ValueError(f"zero_tol must be >= 0, got {self.zero_tol}")


@dataclass(frozen=True)
class _PilotOptions:
    beta: float = field(default=1.0, metadata={"help": "PILoT init: m0^2 - w0^2 = beta"})
    delta: float = field(default=1.01, metadata={"help": "PILoT: alpha multiplier per update (> 1)"})
    pilot_alpha0: float = field(default=1e-5, metadata={"help": "PILoT: initial alpha (loss + alpha(||m||^2+||w||^2))"})
    pilot_k: float = field(default=0.5, metadata={
        "help": "PILoT: L1 budget K as a fraction of ||x||_1 at the start of each training call"})
    pilot_k_abs: float = field(default=0.0, metadata={"help": "PILoT: absolute K (used when > 0)"})
    pilot_update: str = field(default="step", metadata={"help": "PILoT: Algorithm 1's k counts steps | epochs"})
    pilot_probe: int = field(default=128, metadata={
        "help": "PILoT, step updates: training points whose accuracy is the per-step train accuracy"})


def _pilot_checks(cfg) -> None:
    if not cfg.beta > 0:
        raise ValueError(f"beta must be positive, got {cfg.beta}")
    if not cfg.delta > 1:
        raise ValueError(f"delta must be > 1, got {cfg.delta}")
    if not cfg.pilot_alpha0 >= 0:
        raise ValueError(f"pilot_alpha0 must be >= 0, got {cfg.pilot_alpha0}")
    if cfg.pilot_k < 0 or cfg.pilot_k_abs < 0:
        raise ValueError("pilot_k and pilot_k_abs must be >= 0")
    if cfg.pilot_update not in PILOT_UPDATES:
        raise ValueError(f"unknown pilot_update {cfg.pilot_update!r}; choose from {', '.join(PILOT_UPDATES)}")
    if cfg.pilot_probe < 1:
        raise ValueError(f"pilot_probe must be >= 1, got {cfg.pilot_probe}")


@dataclass(frozen=True)
class PilotConfig(ReparamConfig, _PilotOptions):
    """PILoT: train ``m * w`` with Algorithm 1's alpha schedule, fold, prune to the target."""

    def __post_init__(self):
        super().__post_init__()
        _pilot_checks(self)


@dataclass(frozen=True)
class SpredConfig(ReparamConfig):
    """spred: ``u * v`` with constant L2 decay (an L1 solver), fold, prune to the target."""

    spred_lambda: float = field(default=5e-4, metadata={
        "help": "spred: L2 decay on u and v (loss + lambda/2 (||u||^2+||v||^2) = lambda ||x||_1 at balance)"})

    def __post_init__(self):
        super().__post_init__()
        if self.spred_lambda < 0:
            raise ValueError(f"spred_lambda must be >= 0, got {self.spred_lambda}")


@dataclass(frozen=True)
class StrConfig(ReparamConfig):
    """STR: soft threshold ``sign(W) relu(|W| - sigmoid(s))``, fold, prune to the target."""

    str_init: float = field(default=-5.0, metadata={"help": "STR: initial s of every layer"})
    str_wd: float = field(default=5e-4, metadata={"help": "STR: weight decay on W and s"})

    def __post_init__(self):
        super().__post_init__()
        if self.str_wd < 0:
            raise ValueError(f"str_wd must be >= 0, got {self.str_wd}")


@dataclass(frozen=True)
class DwfConfig(ReparamConfig):
    """DWF: product of D factors with L2 decay (an L_{2/D} penalty), fold, prune to the target."""

    dwf_depth: int = field(default=3, metadata={"help": "DWF: number of factors D (2 = spred's objective)"})
    dwf_lambda: float = field(default=5e-4, metadata={"help": "DWF: loss + (lambda/D) sum_d ||w_d||^2"})
    dwf_init_std: str = field(default="fan_in", metadata={
        "help": "DWF init: std s of the standard init, fan_in (1/sqrt(3 fan_in)) | empirical"})
    dwf_eps_ratio: float = field(default=0.25, metadata={"help": "DWF init: lower bound (ratio * s)^(1/D)"})
    dwf_match: str = field(default="variance", metadata={
        "help": "DWF init: variance (rescale so the product's std is s) | none (literal truncation)"})

    def __post_init__(self):
        super().__post_init__()
        if self.dwf_depth < 2:
            raise ValueError(f"dwf_depth must be >= 2, got {self.dwf_depth}")
        if self.dwf_lambda < 0:
            raise ValueError(f"dwf_lambda must be >= 0, got {self.dwf_lambda}")
        if self.dwf_init_std not in DWF_INIT_STDS:
            raise ValueError(f"unknown dwf_init_std {self.dwf_init_std!r}; choose from {', '.join(DWF_INIT_STDS)}")
        if self.dwf_match not in DWF_MATCHES:
            raise ValueError(f"unknown dwf_match {self.dwf_match!r}; choose from {', '.join(DWF_MATCHES)}")
        if not 0 < self.dwf_eps_ratio < 1:
            raise ValueError(f"dwf_eps_ratio must be in (0, 1), got {self.dwf_eps_ratio}")


@dataclass(frozen=True)
class ImpPilotConfig(CyclesConfig, _PilotOptions):
    """IMP rounds (rewind to init) with PILoT training in every round."""

    def __post_init__(self):
        super().__post_init__()
        _pilot_checks(self)


@dataclass(frozen=True)
class LrrPilotConfig(CyclesConfig, _PilotOptions):
    """LRR rounds (weights and momentum kept, LR schedule restarted) with PILoT training."""

    rewind: str = field(default="lr", metadata={
        "help": "lr: learning-rate rewinding (LRR); init | step rewind the weights as in imp+pilot"})

    def __post_init__(self):
        super().__post_init__()
        _pilot_checks(self)


# -- the methods --------------------------------------------------------------------------------
def l1_norms(ctx: PruneContext) -> torch.Tensor:
    """(R,) ``||x||_1`` of the effective prunable weights."""
    with torch.no_grad():
        return sum(per_replica_sum(l.weight().abs()).double().cpu() for l in ctx.layers)


@torch.no_grad()
def fold_layers(layers) -> None:
    """Collapse each layer's reparametrisation into its raw weight: ``param = x * mask``, and
    remove it (layers without one are left as they are). Rebuild the optimiser afterwards."""
    for layer in layers:
        if layer.reparam is None:
            continue
        x = layer.weight().detach().clone()
        layer.set_reparam(None)
        layer.rview(layer.param).copy_(x)


class ReparamMethod(Method):
    """Train reparametrised weights with a regulariser; fold; prune the folded weights by magnitude.

    Subclasses give the reparametrisation (:meth:`spec`) and the regulariser's coefficient
    (:meth:`coefficient`: loss ``+ c * sq_norm`` where ``sq_norm`` is the squared norm of all the
    layer's factors, per replica).
    """

    procedure = "after_training"

    def spec(self):
        raise NotImplementedError

    def coefficient(self, ctx: PruneContext):
        raise NotImplementedError

    # hooks -------------------------------------------------------------------------------
    def setup(self, ctx: PruneContext) -> None:
        gens = [ctx.generator(r) for r in range(ctx.R)]
        spec = self.spec()
        self.modules: list[ReparamWeight] = []
        for layer in ctx.layers:
            mod = spec.build(layer.weight().detach(), layer.replicated, gens)
            layer.set_reparam(mod.to(layer.mask.device))
            self.modules.append(mod)
        ctx.trainer.reset_optimizer()  # the factors are the trainable tensors now
        self.active = True
        ctx.record("l1_init", l1_norms(ctx).tolist())

    def penalty(self, ctx: PruneContext):
        if not getattr(self, "active", False):
            return None
        sq = sum(m.sq_norm() for m in self.modules)
        coef = torch.as_tensor(self.coefficient(ctx), dtype=sq.dtype, device=sq.device)
        return (coef - ctx.trainer.weight_decay / 2) * sq

    def scores(self, ctx: PruneContext) -> list[torch.Tensor]:
        return [l.weight().detach().abs() for l in ctx.layers]

    @torch.no_grad()
    def finalize(self, ctx: PruneContext) -> None:
        """Fold: the raw weights become ``x`` (masked); record the natural sparsity."""
        self.natural_metrics(ctx)
        fold_layers(ctx.layers)
        self.active = False
        self.modules = []

    # metrics -----------------------------------------------------------------------------
    @torch.no_grad()
    def natural_metrics(self, ctx: PruneContext) -> None:
        tol = self.config.zero_tol
        xs = [l.weight().detach() for l in ctx.layers]
        ctx.record("natural_nnz", sum(per_replica_sum((x != 0).to(torch.int64)).cpu() for x in xs).tolist())
        ctx.record("natural_nnz_tol", sum(per_replica_sum((x.abs() > tol).to(torch.int64)).cpu() for x in xs).tolist())
        ctx.record("l1_final", sum(per_replica_sum(x.abs()).double().cpu() for x in xs).tolist())


def _probe(ctx: PruneContext, size: int):
    X, y = ctx.trainer.X, ctx.trainer.y
    idx = np.random.default_rng(PROBE_SEED).permutation(len(X))[:size]
    idx = torch.as_tensor(idx, device=X.device)
    return X[idx], y[idx]


class _PilotTraining:
    """PILoT's reparametrisation, regulariser and schedule (shared by ``pilot`` and the cycles)."""

    track_accuracy = True

    def spec(self):
        return Factorisation(depth=2, init="pilot", beta=self.config.beta)

    def coefficient(self, ctx):
        return self.schedule.alpha

    def _start_call(self, ctx: PruneContext) -> None:
        cfg, tr = self.config, ctx.trainer
        l1 = l1_norms(ctx)
        K = torch.full_like(l1, cfg.pilot_k_abs) if cfg.pilot_k_abs > 0 else cfg.pilot_k * l1
        if cfg.pilot_update == "step":
            T = tr.epochs * tr.steps_per_epoch
            self._probe = _probe(ctx, cfg.pilot_probe)
            prev = tr.evaluate(*self._probe)[0].cpu()
        else:
            T, prev = tr.epochs, torch.full_like(l1, -math.inf)
        self.schedule = PilotSchedule(cfg.pilot_alpha0, cfg.delta, K, T, prev)
        self.calls = getattr(self, "calls", 0) + 1
        ctx.record("pilot_K", K.tolist())

    def _end_call(self, ctx: PruneContext) -> None:
        s = self.schedule
        ctx.record("pilot_alpha_max", s.alpha_max.tolist())
        ctx.record("pilot_alpha_final", s.alpha.tolist())
        ctx.record("pilot_alpha_ups", s.ups.tolist())
        ctx.record("pilot_updates", s.k)

    def before_train(self, ctx):
        if self.active:  # every training call with the factors installed (not fine-tuning after the fold)
            self._start_call(ctx)

    def after_step(self, ctx):
        if not self.active or self.config.pilot_update != "step":
            return
        acc = ctx.trainer.evaluate(*self._probe)[0]
        self.schedule.update(acc, l1_norms(ctx))

    def after_epoch(self, ctx, stats: EpochStats):
        if not self.active:
            return
        if self.config.pilot_update == "epoch":
            self.schedule.update(stats.train_acc, l1_norms(ctx))
        if stats.epoch == stats.epochs - 1:
            self._end_call(ctx)


@register
class Pilot(_PilotTraining, ReparamMethod):
    name = "pilot"
    Config = PilotConfig


@register
class ImpPilot(_PilotTraining, ReparamMethod):
    """PILoT inside IMP: rounds prune ``|m * w|`` globally, then rewind the factors to PILoT's init."""

    name, Config, procedure = "imp+pilot", ImpPilotConfig, "cycles"


@register
class LrrPilot(_PilotTraining, ReparamMethod):
    """PILoT inside LRR: rounds prune ``|m * w|``; factors and momentum are kept."""

    name, Config, procedure = "lrr+pilot", LrrPilotConfig, "cycles"


@register
class Spred(ReparamMethod):
    name = "spred"
    Config = SpredConfig

    def spec(self):
        return Factorisation(depth=2, init="balanced")

    def coefficient(self, ctx):
        return self.config.spred_lambda / 2


@register
class STR(ReparamMethod):
    name = "str"
    Config = StrConfig

    def spec(self):
        return SoftThreshold(s_init=self.config.str_init)

    def coefficient(self, ctx):
        return self.config.str_wd / 2

    @torch.no_grad()
    def natural_metrics(self, ctx):
        super().natural_metrics(ctx)
        thr = torch.stack([m.threshold().cpu() for m in self.modules], 1)  # (R, L)
        ctx.record("str_thresholds", [t.tolist() for t in thr])


@register
class DWF(ReparamMethod):
    name = "dwf"
    Config = DwfConfig

    def spec(self):
        c = self.config
        return Factorisation(depth=c.dwf_depth, init="dwf", dwf_std=c.dwf_init_std, dwf_eps_ratio=c.dwf_eps_ratio,
                             dwf_match=c.dwf_match)

    def coefficient(self, ctx):
        return self.config.dwf_lambda / self.config.dwf_depth

    @torch.no_grad()
    def natural_metrics(self, ctx):
        super().natural_metrics(ctx)
        collapsed = 0
        for mod, layer in zip(self.modules, ctx.layers):
            dead = torch.zeros_like(layer.mask, dtype=torch.bool)
            for f in mod.factors_r():
                dead |= f == 0
            collapsed = collapsed + per_replica_sum((dead & (layer.mask != 0)).to(torch.int64)).cpu()
        ctx.record("dwf_collapsed_factors", collapsed.tolist())
