"""The Cubist Spiral data set.

Recipe of Zhang & Papyan, "Sparsest Models Elude Pruning" (ICML 2024): two piecewise-linear
spirals, one per class, sampled densely along their segments and standardised. On defaults
``make_spiral()`` reproduces the published data set exactly: 49,982 points (24,991 per class,
class 0 first), deterministic, noise-free.

The recipe parameters below generalise it (turns, class offset, point budget, noise). The
held-out companion sets are this project's addition; the paper trains and evaluates on the
training points.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

HELDOUT_KINDS = ("between", "noisy")


@dataclass(frozen=True)
class SpiralRecipe:
    """Parameters of the Cubist Spiral; the defaults are the paper's data set."""

    turns: float = field(default=2.0, metadata={"help": "number of turns of each spiral"})
    offset: float = field(default=15.0, metadata={"help": "distance of each class curve from the centre line"})
    points_per_class: int = field(
        default=25000,
        metadata={"help": "point budget per class, split over segments by length and truncated "
                          "(25000 gives 24,991 points)"},
    )
    noise_std: float = field(
        default=0.0, metadata={"help": "std of Gaussian noise on vertices and points (raw units)"})
    seed: int = field(default=0, metadata={"help": "seed of the noise (unused when noise_std is 0)"})

    def __post_init__(self):
        if not self.turns > 0:
            raise ValueError(f"turns must be positive, got {self.turns}")
        if round(8 * self.turns) < 1:
            raise ValueError(f"turns must give at least one segment, got {self.turns}")
        if self.points_per_class < 2:
            raise ValueError(f"points_per_class must be at least 2, got {self.points_per_class}")
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")
        if not np.isfinite(self.offset):
            raise ValueError(f"offset must be finite, got {self.offset}")

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


def _sample_curve(v: np.ndarray, budget: int, midpoints: bool) -> np.ndarray:
    seg_len = np.linalg.norm(v[1:] - v[:-1], axis=1)
    total = seg_len.sum()
    parts = []
    for i, length in enumerate(seg_len):
        n = int(length / total * budget)
        t = np.linspace(0, 1, n, dtype=np.float32).astype(np.float64)
        if midpoints:
            t = (t[:-1] + t[1:]) / 2
        t = t[:, None]
        parts.append(t * v[i] + (1 - t) * v[i + 1])
    return np.concatenate(parts)


def _raw(recipe: SpiralRecipe, midpoints: bool = False, extra_noise: float = 0.0,
         noise_seed: int | None = None):
    rng = np.random.default_rng(recipe.seed) if recipe.noise_std > 0 else None
    curves = _vertices(recipe, rng)
    points = [_sample_curve(c, recipe.points_per_class, midpoints) for c in curves]
    if rng is not None:
        points = [p + rng.normal(0.0, recipe.noise_std, size=p.shape) for p in points]
    if extra_noise > 0:
        rng2 = np.random.default_rng(noise_seed)
        points = [p + rng2.normal(0.0, extra_noise, size=p.shape) for p in points]
    X = np.concatenate(points).astype(np.float32)
    y = np.concatenate([np.zeros(len(points[0])), np.ones(len(points[1]))]).astype(np.float32)
    return X, y


def _standardise(X: np.ndarray, ref: np.ndarray) -> np.ndarray:
    mean = ref.mean(axis=0, dtype=np.float32)
    std = ref.std(axis=0, ddof=1, dtype=np.float32)
    return ((X - mean) / std).astype(np.float32)


def make_spiral(**params) -> tuple[np.ndarray, np.ndarray]:
    """The Cubist Spiral: ``X`` float32 (N, 2) standardised, ``y`` float32 (N,) in {0, 1}.

    Keyword arguments are the fields of :class:`SpiralRecipe`; on defaults this is the
    paper's data set (N = 49,982, class 0 first).
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


def dataset_id(X: np.ndarray, y: np.ndarray, recipe: dict | None = None) -> str:
    """Stable id of a data set: a hash of its recipe parameters and array bytes (16 hex digits)."""
    h = hashlib.sha256()
    h.update(json.dumps(recipe or {}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Dataset:
    """A training set, its held-out companion and its id, as every trainer consumes them."""

    X: np.ndarray
    y: np.ndarray
    X_heldout: np.ndarray
    y_heldout: np.ndarray
    id: str
    recipe: dict

    @classmethod
    def spiral(cls, heldout: str = "between", **params) -> "Dataset":
        recipe = SpiralRecipe(**params)
        X, y = make_spiral(**recipe.to_dict())
        Xh, yh = make_heldout(heldout, **recipe.to_dict())
        meta = {"name": "cubist_spiral", **recipe.to_dict(), "heldout": heldout}
        return cls(X, y, Xh, yh, dataset_id(X, y, meta), meta)
