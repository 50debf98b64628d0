"""Reparametrised weights for continuous sparsification (the training-time side of PILoT, spred,
STR and DWF), as small modules whose ``forward()`` returns the weight they stand for.

A prunable weight ``x`` is replaced by trainable *factors*; the network recomputes ``x`` from them
in every forward pass (``pruners.layers.Prunable.set_reparam`` installs a module from here as the
layer's weight source; the layer's 0/1 mask multiplies its output). Every tensor here is handled
with a leading replica axis ``R`` -- an ensemble of spiral MLPs stored as ``(R, out, in)`` or a
plain ``nn.Linear`` / ``nn.Conv2d`` seen as ``R = 1`` -- and every norm, threshold and random draw
is per replica.

- :class:`Factorisation` -- ``x = w_1 * ... * w_D`` element-wise (:class:`FactorWeight`).
  ``init="pilot"`` (D = 2): PILoT, Jacobs & Burkholz, "Mask in the Mirror: Implicit
  Sparsification", ICLR 2025: from a standard init ``x0``, ``m0 = sqrt((beta + sqrt(beta^2 +
  4 x0^2)) / 2)``, ``w0 = x0 / m0``, so ``m0 * w0 = x0`` and ``m0^2 - w0^2 = beta``.
  ``init="balanced"``: spred, Ziyin & Wang, "spred: Solving L1 Penalty with SGD", ICML 2023:
  every factor ``|x0|^(1/D)``, the sign on the last one.
  ``init="dwf"``: Deep Weight Factorization, Kolb, Weber, Bischl & Ruegamer, "Deep Weight
  Factorization: Sparse Learning Through the Lens of Artificial Symmetries", ICLR 2025 (their
  initialisation as reconstructed in ALGORITHMS.md §4, see :func:`dwf_factors`).
- :class:`SoftThreshold` -- STR, Kusupati et al., "Soft Threshold Weight Reparameterization for
  Learnable Sparsity", ICML 2020: ``x = sign(W) * relu(|W| - sigmoid(s))`` with one learnable
  ``s`` per layer and replica (:class:`SoftThresholdWeight`).

Folding (collapsing the factors back into one plain weight) is ``module().detach()``: the
framework copies it into the layer's raw parameter and removes the module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

FACTOR_INITS = ("pilot", "balanced", "dwf", "identity")
DWF_INIT_STDS = ("fan_in", "empirical")
DWF_MATCHES = ("variance", "none")


# -- shapes ------------------------------------------------------------------------------------
def per_replica_sum(t: torch.Tensor) -> torch.Tensor:
    """``(R,)``: the sum of ``t`` ``(R, ...)`` over everything but the replica axis."""
    return t.reshape(t.shape[0], -1).sum(1)


def fan_in(shape) -> int:
    """Inputs per output unit of one replica's weight ``(out, in, *kernel)``."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"a weight needs (out, in, ...) dimensions, got shape {shape}")
    return int(math.prod(shape[1:]))


def _generators(generator, R: int) -> list:
    if generator is None or isinstance(generator, torch.Generator):
        return [generator] * R
    gens = list(generator)
    if len(gens) != R:
        raise ValueError(f"{len(gens)} generators for {R} replicas")
    return gens


# -- initialisations (x0 and all results are (R, *shape)) --------------------------------------
def pilot_factors(x0: torch.Tensor, beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """PILoT's init: ``(m0, w0)`` with ``m0 * w0 = x0`` and ``m0^2 - w0^2 = beta`` (``m0 > 0``)."""
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")
    x = x0.double()
    m = torch.sqrt((beta + torch.sqrt(beta * beta + 4 * x * x)) / 2)
    return m.to(x0.dtype), (x / m).to(x0.dtype)


def balanced_factors(x0: torch.Tensor, depth: int = 2) -> tuple[torch.Tensor, ...]:
    """spred's balanced init: each factor ``|x0|^(1/D)``, the sign carried by the last."""
    mag = x0.abs().double() ** (1.0 / depth)
    out = [mag.to(x0.dtype) for _ in range(depth)]
    out[-1] = (torch.sign(x0.double()) * mag).to(x0.dtype)
    return tuple(out)


def _norm_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _norm_pdf(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def truncated_second_moment(sigma: float, lo: float, hi: float) -> float:
    """``E[v^2]`` for ``v ~ N(0, sigma^2)`` conditioned on ``lo < |v| < hi``."""
    a, b = lo / sigma, hi / sigma
    mass = _norm_cdf(b) - _norm_cdf(a)
    return sigma * sigma * (1 + (a * _norm_pdf(a) - b * _norm_pdf(b)) / mass)


def dwf_bounds(s: float, depth: int, eps_ratio: float = 0.25, match: str = "variance") -> tuple[float, float, float]:
    """``(sigma, lo, hi)`` of DWF factor entries for a layer whose standard init has std ``s``.

    Reconstruction of DWF's initialisation (ALGORITHMS.md §4; uncertain in detail): entries are
    ``N(0, sigma^2)`` with ``sigma = s^(1/D)`` ("VarMatch": the product of D independent factors
    then has variance ``s^2``), truncated to ``eps^(1/D) < |v| < min(1, (2 s)^(1/D))`` with
    ``eps = eps_ratio * s``. The truncation alone shrinks the product's std to about 0.86 s
    (D = 2) .. 0.78 s (D = 4); ``match="variance"`` multiplies sigma and both bounds by one
    constant so that the truncated factors have second moment ``s^(2/D)`` and the product has
    std exactly ``s`` again. ``match="none"`` is the literal recipe.
    """
    if depth < 2:
        raise ValueError(f"DWF needs depth >= 2, got {depth}")
    if not (s > 0 and 0 < eps_ratio < 1):
        raise ValueError(f"need s > 0 and 0 < eps_ratio < 1, got s={s}, eps_ratio={eps_ratio}")
    if match not in DWF_MATCHES:
        raise ValueError(f"unknown DWF variance match {match!r}; choose from {', '.join(DWF_MATCHES)}")
    sigma = s ** (1.0 / depth)
    lo, hi = (eps_ratio * s) ** (1.0 / depth), min(1.0, (2 * s) ** (1.0 / depth))
    if not lo < hi:
        raise ValueError(f"empty DWF truncation interval ({lo}, {hi}) for s={s}, depth={depth}")
    if match == "variance":
        c = sigma / math.sqrt(truncated_second_moment(sigma, lo, hi))
        sigma, lo, hi = c * sigma, c * lo, c * hi
    return sigma, lo, hi


def sample_truncated(shape, sigma: float, lo: float, hi: float, generator=None, dtype=torch.float32,
                     device=None) -> torch.Tensor:
    """``N(0, sigma^2)`` conditioned on ``lo < |v| < hi``, with independent random signs.

    Sampled by inverting the normal CDF on ``(Phi(lo/sigma), Phi(hi/sigma))``: the distribution of
    draw-and-reject, with a fixed number of random draws.
    """
    pa, pb = _norm_cdf(lo / sigma), _norm_cdf(hi / sigma)
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    neg = torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5
    mag = (sigma * torch.special.ndtri(pa + (pb - pa) * u)).clamp(min=lo, max=hi)
    return torch.where(neg, -mag, mag).to(dtype=dtype, device=device)


def dwf_std(x0: torch.Tensor, how: str = "fan_in") -> torch.Tensor:
    """``(R,)`` float64: the std ``s`` of the layer's standard init.

    ``fan_in``: ``1/sqrt(3 fan_in)``, the std of PyTorch's default ``U(+-1/sqrt(fan_in))``;
    ``empirical``: the std of the given ``x0`` (per replica).
    """
    R = x0.shape[0]
    if how == "fan_in":
        return torch.full((R,), 1.0 / math.sqrt(3 * fan_in(x0.shape[1:])), dtype=torch.float64)
    if how == "empirical":
        return x0.detach().double().reshape(R, -1).std(dim=1, unbiased=True).cpu()
    raise ValueError(f"unknown DWF init std {how!r}; choose from {', '.join(DWF_INIT_STDS)}")


def dwf_factors(x0: torch.Tensor, depth: int, *, std: str = "fan_in", eps_ratio: float = 0.25,
                match: str = "variance", generator=None) -> tuple[torch.Tensor, ...]:
    """DWF's init: ``depth`` independent factors shaped like ``x0`` ``(R, *shape)``.

    Only the scale of ``x0`` is used (``std``), not its values. ``generator``: one
    ``torch.Generator`` per replica (or one for all, or None).
    """
    R, shape = x0.shape[0], tuple(x0.shape[1:])
    gens = _generators(generator, R)
    s_per = dwf_std(x0, std)
    factors = [[] for _ in range(depth)]
    for r in range(R):
        sigma, lo, hi = dwf_bounds(float(s_per[r]), depth, eps_ratio, match)
        for d in range(depth):
            factors[d].append(sample_truncated(shape, sigma, lo, hi, gens[r], x0.dtype, x0.device))
    return tuple(torch.stack(f) for f in factors)


# -- reparametrisation specs -------------------------------------------------------------------
@dataclass(frozen=True)
class Factorisation:
    """``x = w_1 * ... * w_D`` (element-wise); see the module docstring for the inits."""

    depth: int = field(default=2, metadata={"help": "number of factors D"})
    init: str = field(default="pilot", metadata={"help": "pilot | balanced | dwf | identity"})
    beta: float = field(default=1.0, metadata={"help": "PILoT: m0^2 - w0^2 at init"})
    dwf_std: str = field(default="fan_in", metadata={"help": "DWF: std of the standard init, fan_in | empirical"})
    dwf_eps_ratio: float = field(default=0.25, metadata={"help": "DWF: eps = ratio * s in the lower bound"})
    dwf_match: str = field(default="variance", metadata={"help": "DWF: variance | none (see dwf_bounds)"})

    def __post_init__(self):
        if self.init not in FACTOR_INITS:
            raise ValueError(f"unknown factor init {self.init!r}; choose from {', '.join(FACTOR_INITS)}")
        ok = {"pilot": self.depth == 2, "identity": self.depth == 1, "dwf": self.depth >= 2,
              "balanced": self.depth >= 1}[self.init]
        if not ok:
            raise ValueError(f"init {self.init!r} does not support depth {self.depth}")

    def init_factors(self, x0: torch.Tensor, generator=None) -> tuple[torch.Tensor, ...]:
        """Factors ``(R, *shape)`` from the weight ``x0`` ``(R, *shape)``."""
        if self.init == "pilot":
            return pilot_factors(x0, self.beta)
        if self.init == "balanced":
            return balanced_factors(x0, self.depth)
        if self.init == "identity":
            return (x0.clone(),)
        return dwf_factors(x0, self.depth, std=self.dwf_std, eps_ratio=self.dwf_eps_ratio,
                           match=self.dwf_match, generator=generator)

    @staticmethod
    def compose(*factors: torch.Tensor) -> torch.Tensor:
        x = factors[0]
        for f in factors[1:]:
            x = x * f
        return x

    @staticmethod
    def sq_norm(*factors: torch.Tensor) -> torch.Tensor:
        """``(R,)``: ``sum_d ||w_d||^2``."""
        return sum(per_replica_sum(f * f) for f in factors)

    def build(self, x0: torch.Tensor, replicated: bool = True, generator=None) -> "FactorWeight":
        """The module standing for the weight ``x0`` ``(R, *shape)``; ``replicated=False`` (a plain
        layer, R = 1) makes it store and return the layer's own shape ``shape``."""
        return FactorWeight(self, self.init_factors(x0.detach(), generator), replicated)


@dataclass(frozen=True)
class SoftThreshold:
    """STR: ``x = sign(W) * relu(|W| - sigmoid(s))``, one ``s`` per layer and replica."""

    s_init: float = field(default=-5.0, metadata={"help": "initial s (threshold sigmoid(s))"})

    def init_factors(self, x0: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.full((x0.shape[0],) + (1,) * (x0.dim() - 1), float(self.s_init), dtype=x0.dtype,
                       device=x0.device)
        return x0.clone(), s

    @staticmethod
    def threshold(s: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(s)

    @classmethod
    def compose(cls, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.sign(w) * torch.relu(w.abs() - cls.threshold(s))

    @staticmethod
    def sq_norm(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``(R,)``: ``||W||^2 + s^2`` (STR decays both)."""
        return per_replica_sum(w * w) + per_replica_sum(s * s)

    def build(self, x0: torch.Tensor, replicated: bool = True, generator=None) -> "SoftThresholdWeight":
        """As :meth:`Factorisation.build`."""
        return SoftThresholdWeight(self, *self.init_factors(x0.detach(), generator), replicated=replicated)


# -- modules -----------------------------------------------------------------------------------
class ReparamWeight(nn.Module):
    """A weight recomputed from trainable factors; ``forward()`` returns it in the layer's own
    shape (``(R, *shape)`` when ``replicated``, else ``shape``).

    The factors are stored in the layer's own shape too, so an optimiser that expects a leading
    replica axis on every parameter of a batched model finds one. :meth:`factors_r` views them
    with the replica axis.
    """

    def __init__(self, spec, replicated: bool):
        super().__init__()
        self.spec, self.replicated = spec, bool(replicated)

    def _own(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.replicated else t.squeeze(0)

    def _r(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.replicated else t.unsqueeze(0)

    def factors(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def factors_r(self) -> list[torch.Tensor]:
        return [self._r(f) for f in self.factors()]

    def weight_r(self) -> torch.Tensor:
        """The weight ``(R, *shape)`` (in the autograd graph)."""
        return self.spec.compose(*self.factors_r())

    def forward(self) -> torch.Tensor:
        return self._own(self.weight_r())

    def sq_norm(self) -> torch.Tensor:
        """``(R,)``: the squared norm the method's regulariser penalises (differentiable)."""
        return self.spec.sq_norm(*self.factors_r())

    @torch.no_grad()
    def zero_where_(self, keep: torch.Tensor) -> None:
        """Zero the weight-shaped factors where ``keep`` ``(R, *shape)`` is 0 (masked entries)."""
        for f in self.factors():
            fr = self._r(f)
            if fr.shape == keep.shape:
                fr.mul_((keep != 0).to(fr.dtype))


class FactorWeight(ReparamWeight):
    """``x = w_1 * ... * w_D``."""

    def __init__(self, spec: Factorisation, factors, replicated: bool):
        super().__init__(spec, replicated)
        self.factor_list = nn.ParameterList([nn.Parameter(self._own(f).clone()) for f in factors])

    def factors(self) -> list[nn.Parameter]:
        return list(self.factor_list)


class SoftThresholdWeight(ReparamWeight):
    """``x = sign(W) * relu(|W| - sigmoid(s))``; ``s`` is ``(R, 1, ..)`` (plain: ``(1, ..)``)."""

    def __init__(self, spec: SoftThreshold, w: torch.Tensor, s: torch.Tensor, replicated: bool):
        super().__init__(spec, replicated)
        self.w = nn.Parameter(self._own(w).clone())
        self.s = nn.Parameter(self._own(s).clone())

    def factors(self) -> list[nn.Parameter]:
        return [self.w, self.s]

    def threshold(self) -> torch.Tensor:
        """``(R,)``: the current threshold ``sigmoid(s)``."""
        return self.spec.threshold(self._r(self.s).detach()).reshape(-1)
