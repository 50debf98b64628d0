"""The Cubist Spiral data set.

Recipe of Zhang & Papyan, "Sparsest Models Elude Pruning" (ICML 2024): two piecewise-linear
spirals, one per class, sampled densely along their segments and standardised. On defaults
``make_spiral()`` reproduces the published data set bit for bit: 49,982 points (24,991 per
class, class 0 first), deterministic, noise-free; the sha256 of ``X.tobytes()`` is
``7f5bc2e560a6e7f92c8526b29ba0c6e37d3f9d9b788f59972e50149857bdd69b`` (:data:`PAPER_X_SHA256`).

The paper builds the arrays with torch, and so does this module, step for step (that is what
makes it bit-exact; numpy's float32 reductions give other last bits): float64 vertices (computed
in numpy, converted with ``torch.tensor``), per segment ``int(len / total * budget)`` points at
``t * v_i + (1 - t) * v_{i+1}`` with a float32 ``torch.linspace`` parameter ``t`` (``1 - t`` in
float32, promoted to float64 by torch), both classes concatenated and cast to float32, then
``X - torch.mean(X, 0)`` and division by ``torch.std`` (unbiased, float32) of the centred ``X``.
torch is imported only inside the functions, so importing this module (and ``cubist --help``)
stays cheap.

The recipe parameters below generalise it (turns, class offset, point budget, noise: numpy
Gaussian noise from ``seed`` on vertices and points, raw units). The held-out companion sets are
this project's addition, standardised with the training statistics computed the same torch way;
the paper trains and evaluates on the training points.

The spiral is the registry's data set ``spiral`` (:mod:`cubist.data`), which computes its one
id (:meth:`cubist.data.DataConfig.split_id`) for ``cubist data`` and every result row alike.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

HELDOUT_KINDS = ("between", "noisy")

#: sha256 of the paper's arrays: ``X`` float32 (49982, 2) C order, ``y`` float32 (49982,) bytes.
PAPER_X_SHA256 = "7f5bc2e560a6e7f92c8526b29ba0c6e37d3f9d9b788f59972e50149857bdd69b"
PAPER_Y_SHA256 = "07826c9dd61e50822c941a33ccc0610e514e7b722f1bc819eed375a5b57640b0"

#: Limits of the recipe. The class curves lie ``offset`` inside and outside the centre line
#: ``r = 10 theta + pi``, whose turns are ``20 pi`` apart: at ``offset`` 0 both classes share one
#: curve, at ``10 pi`` class 0 of a turn lies on class 1 of the next, so ``0 < offset < 10 pi``
#: keeps them apart (the paper's 15 is near the middle). The point budget and the turns are bounded
#: so that a typo cannot ask for gigabytes (10 million points per class: 160 MB of float64).
MAX_OFFSET = 10 * np.pi
MAX_POINTS_PER_CLASS = 10_000_000
MAX_TURNS = 100


@dataclass(frozen=True)
class SpiralRecipe:
    """Parameters of the Cubist Spiral; the defaults are the paper's data set."""

    turns: float = field(default=2.0, metadata={"help": "number of turns of each spiral"})
    offset: float = field(default=15.0, metadata={"help": "distance of each class curve from the centre line, in (0, 10 pi)"})
    points_per_class: int = field(
        default=25000,
        metadata={"help": "point budget per class, split over segments by length and truncated "
                          "(25000 gives 24,991 points)"},
    )
    noise_std: float = field(
        default=0.0, metadata={"help": "std of Gaussian noise on vertices and points (raw units)"})
    seed: int = field(default=0, metadata={"help": "seed of the noise (unused when noise_std is 0)"})

    def __post_init__(self):
        if not (np.isfinite(self.turns) and 0 < self.turns <= MAX_TURNS):
            raise ValueError(f"turns must be in (0, {MAX_TURNS}], got {self.turns}")
        if round(8 * self.turns) < 1:
            raise ValueError(f"turns must give at least one segment (turns >= 1/16), got {self.turns}")
        if not 0 < self.offset < MAX_OFFSET:
            raise ValueError(f"offset must be in (0, 10*pi = {MAX_OFFSET:.4f}) to keep the classes apart "
                             f"(0 puts both on one curve; 10*pi puts class 0 on the next turn's class 1), got {self.offset}")
        if not 2 <= self.points_per_class <= MAX_POINTS_PER_CLASS:
            raise ValueError(f"points_per_class must be in 2..{MAX_POINTS_PER_CLASS:,}, got {self.points_per_class}")
        if not (np.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"noise_std must be >= 0 and finite, got {self.noise_std}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _vertices(recipe: SpiralRecipe, rng: np.random.Generator | None):
    n_seg = int(round(8 * recipe.turns))  # 45-degree steps
    theta = np.linspace(np.pi, np.pi + 2 * np.pi * recipe.turns, n_seg + 1) + 0.4 * np.pi
    r = 10 * theta + np.pi
    centre = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    normal = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    curves = [centre + recipe.offset * normal, centre - recipe.offset * normal]
    shift = np.minimum(curves[0].min(axis=0), curves[1].min(axis=0))
    curves = [c - shift for c in curves]
    if rng is not None:
        curves = [c + rng.normal(0.0, recipe.noise_std, size=c.shape) for c in curves]
    return curves


def _sample_curve(v, budget: int, midpoints: bool):
    """Points along the float64 vertex tensor ``v``, the paper's torch arithmetic (float64 out)."""
    import torch

    seg_len = torch.linalg.norm(v[1:] - v[:-1], dim=1)
    total = seg_len.sum()
    parts = []
    for i in range(len(seg_len)):
        n = int(seg_len[i] / total * budget)
        t = torch.linspace(0, 1, n)[:, None]  # float32, as in the paper
        if midpoints:  # our addition: midpoints of consecutive t (float64)
            t = t.double()
            t = (t[:-1] + t[1:]) / 2
        parts.append(t * v[i] + (1 - t) * v[i + 1])
    return torch.cat(parts)


def _raw(recipe: SpiralRecipe, midpoints: bool = False, extra_noise: float = 0.0,
         noise_seed: int | None = None):
    """Unstandardised points (float32 torch tensor, class 0 first) and labels (float32 numpy)."""
    import torch

    rng = np.random.default_rng(recipe.seed) if recipe.noise_std > 0 else None
    curves = [torch.tensor(c) for c in _vertices(recipe, rng)]
    points = [_sample_curve(c, recipe.points_per_class, midpoints) for c in curves]
    if rng is not None:
        points = [p + torch.from_numpy(rng.normal(0.0, recipe.noise_std, size=tuple(p.shape)))
                  for p in points]
    if extra_noise > 0:
        rng2 = np.random.default_rng(noise_seed)
        points = [p + torch.from_numpy(rng2.normal(0.0, extra_noise, size=tuple(p.shape)))
                  for p in points]
    X = torch.cat(points).float()
    y = np.concatenate([np.zeros(len(points[0])), np.ones(len(points[1]))]).astype(np.float32)
    return X, y


def _standardise(X, ref) -> np.ndarray:
    """``(X - mean(ref)) / std(ref - mean(ref))`` in float32 torch (the paper's steps for X = ref)."""
    import torch

    mean = torch.mean(ref, dim=0)
    std = torch.std(ref - mean, dim=0)
    return ((X - mean) / std).numpy()


def make_spiral(**params) -> tuple[np.ndarray, np.ndarray]:
    """The Cubist Spiral: ``X`` float32 (N, 2) standardised, ``y`` float32 (N,) in {0, 1}.

    Keyword arguments are the fields of :class:`SpiralRecipe`; on defaults this is the
    paper's data set, bit for bit (N = 49,982, class 0 first, sha256 :data:`PAPER_X_SHA256`).
    """
    recipe = SpiralRecipe(**params)
    X, y = _raw(recipe)
    return _standardise(X, X), y


def make_heldout(kind: str = "between", noise: float = 0.1, noise_seed: int = 1,
                 **params) -> tuple[np.ndarray, np.ndarray]:
    """A held-out companion of ``make_spiral(**params)``, standardised with the training statistics.

    ``kind="between"``: the midpoints between consecutive training points of every segment
    (same curves, unseen points). ``kind="noisy"``: the training points with Gaussian noise of
    std ``noise`` (raw units, before standardisation; the curves are 30 apart) from ``noise_seed``.
    """
    if kind not in HELDOUT_KINDS:
        raise ValueError(f"unknown held-out kind {kind!r}; choose from {', '.join(HELDOUT_KINDS)}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    recipe = SpiralRecipe(**params)
    X_train, _ = _raw(recipe)
    if kind == "between":
        X, y = _raw(recipe, midpoints=True)
    else:
        X, y = _raw(recipe, extra_noise=noise, noise_seed=noise_seed)
    return _standardise(X, X_train), y
