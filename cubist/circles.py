"""Two concentric circles: a second two-dimensional task beside the Cubist Spiral.

Class 0 lies on a circle of radius ``radius_ratio``, class 1 on the unit circle, both centred at
the origin; ``points_per_class`` points per circle at evenly spaced angles (deterministic, no
noise on defaults, so the classes are exactly balanced). The arrays are standardised like the
spiral's: ``(X - mean) / std`` with the training statistics (float64 arithmetic, float32 out).
Held-out companions: ``between``, the points at the angles halfway between the training angles;
``noisy``, the training points with Gaussian noise of std ``heldout_noise`` (raw units) from
``seed + 1``. Any network separating the classes must enclose the inner circle, so a ReLU MLP
needs at least three first-layer units: sparse solutions exist, as on the spiral, but smaller.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

MAX_POINTS_PER_CLASS = 10_000_000   # as the spiral's: a typo cannot ask for gigabytes


@dataclass(frozen=True)
class CirclesRecipe:
    """Parameters of the two-circles task; the defaults are this project's reference set."""

    points_per_class: int = field(default=2000, metadata={"help": "points per circle, at evenly spaced angles"})
    radius_ratio: float = field(default=0.5, metadata={"help": "radius of the inner circle (class 0); the outer is 1"})
    noise_std: float = field(default=0.0, metadata={"help": "std of Gaussian noise on the points (raw units)"})
    heldout_noise: float = field(default=0.05, metadata={"help": "std of the noise of the 'noisy' held-out set"})
    seed: int = field(default=0, metadata={"help": "seed of the noise (unused when noise_std is 0)"})

    def __post_init__(self):
        if not 2 <= self.points_per_class <= MAX_POINTS_PER_CLASS:
            raise ValueError(f"points_per_class must be in 2..{MAX_POINTS_PER_CLASS:,}, got {self.points_per_class}")
        if not 0 < self.radius_ratio < 1:
            raise ValueError(f"radius_ratio must be in (0, 1), got {self.radius_ratio}")
        for name in ("noise_std", "heldout_noise"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be >= 0 and finite, got {v}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _raw(recipe: CirclesRecipe, split: str) -> tuple[np.ndarray, np.ndarray]:
    n = recipe.points_per_class
    k = np.arange(n, dtype=np.float64) + (0.5 if split == "between" else 0.0)
    theta = 2 * np.pi * k / n
    unit = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    X = np.concatenate([recipe.radius_ratio * unit, unit])
    if recipe.noise_std > 0:
        X = X + np.random.default_rng(recipe.seed).normal(0.0, recipe.noise_std, size=X.shape)
    if split == "noisy":
        X = X + np.random.default_rng(recipe.seed + 1).normal(0.0, recipe.heldout_noise, size=X.shape)
    y = np.concatenate([np.zeros(n), np.ones(n)]).astype(np.float32)
    return X, y


def make_circles(recipe: CirclesRecipe = CirclesRecipe(), split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``X`` float32 (2n, 2) standardised with the training statistics, ``y`` float32 (2n,), class 0 first."""
    if split not in ("train", "between", "noisy"):
        raise ValueError(f"unknown split {split!r}; choose from train, between, noisy")
    X_train, _ = _raw(recipe, "train")
    X, y = _raw(recipe, split)
    mean = X_train.mean(axis=0)
    std = (X_train - mean).std(axis=0, ddof=1)
    return ((X - mean) / std).astype(np.float32), y
