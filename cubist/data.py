"""The data registry: a data set is a name plus a recipe, built into a :class:`Dataset` with one id.

Every engine, command and report takes its data from here: ``DataConfig(name, recipe, heldout)``
names a registered data set (:data:`DATASETS`) and the recipe fields that differ from its
defaults; :meth:`DataConfig.build` gives the training arrays, a held-out companion and the id
that every result row records (``dataset_id``). The id hashes the data set's name, its whole
recipe and the array bytes (:func:`dataset_id`), so two data sets never share one; the held-out
kind is not part of it.

Adding a data set is one entry::

    register_dataset(DataSpec(name="moons", recipe=MoonsRecipe, make=make_moons,
                              description="two interleaved half circles"))

where ``MoonsRecipe`` is a frozen dataclass of parameters (its defaults: the reference set) and
``make(recipe, split)`` returns ``(X, y)``, float32, for ``split`` in :data:`SPLITS`. The data
set is then accepted by name by ``cubist data``, the search, the pruners, the audit and the plots.

Registered: ``spiral`` (the Cubist Spiral of Zhang & Papyan 2024, bit for bit on defaults:
:mod:`cubist.spiral`) and ``circles`` (two concentric circles: :mod:`cubist.circles`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import circles, spiral

HELDOUT_KINDS = spiral.HELDOUT_KINDS
SPLITS = ("train",) + HELDOUT_KINDS
DEFAULT_DATA = "spiral"


def dataset_id(X: np.ndarray, y: np.ndarray, recipe: dict | None = None) -> str:
    """Stable id of a data set: a hash of its recipe parameters and array bytes (16 hex digits)."""
    h = hashlib.sha256()
    h.update(json.dumps(recipe or {}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class DataSpec:
    """A registered data set: its recipe dataclass, its generator, and the name hashed into ids."""

    name: str
    recipe: type
    make: Callable                    # make(recipe, split) -> (X float32 (N, 2), y float32 (N,))
    description: str = ""
    id_name: str = ""                 # the name in the id's metadata (default: name)

    def meta(self, recipe, split: str = "train") -> dict:
        """The metadata hashed into the id of ``split``'s arrays: name, recipe, split (held-out only)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        meta = {"name": self.id_name or self.name, **recipe.to_dict()}
        if split != "train":
            meta["split"] = split
        return meta


DATASETS: dict[str, DataSpec] = {}


def register_dataset(spec: DataSpec) -> DataSpec:
    if spec.name in DATASETS:
        raise ValueError(f"data set {spec.name!r} is already registered")
    DATASETS[spec.name] = spec
    return spec


def get_dataset(name: str) -> DataSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def _make_spiral(recipe: spiral.SpiralRecipe, split: str):
    if split == "train":
        return spiral.make_spiral(**recipe.to_dict())
    return spiral.make_heldout(split, **recipe.to_dict())


register_dataset(DataSpec("spiral", spiral.SpiralRecipe, _make_spiral, id_name="cubist_spiral",
                          description="the Cubist Spiral (Zhang & Papyan 2024), the paper's data bit for bit"))
register_dataset(DataSpec("circles", circles.CirclesRecipe, circles.make_circles,
                          description="two concentric circles (inner class 0, outer class 1)"))


@dataclass(frozen=True)
class Dataset:
    """A training set, its held-out companion and its id, as every trainer consumes them.

    ``id`` is the id of the training set and its recipe, independent of the held-out kind, which
    ``recipe`` records as ``"heldout"``. ``config`` is the :class:`DataConfig` that built it
    (None for hand-made subsets).
    """

    X: np.ndarray
    y: np.ndarray
    X_heldout: np.ndarray
    y_heldout: np.ndarray
    id: str
    recipe: dict
    config: "DataConfig | None" = field(default=None, compare=False)

    @property
    def balanced(self) -> bool:
        """Both classes equally often, in the training and in the held-out set (a constant
        predictor then scores exactly 0.5: what the engine's exact early exit relies on)."""
        return all(np.count_nonzero(v > 0.5) * 2 == len(v) for v in (self.y, self.y_heldout))

    @property
    def name(self) -> str:
        return self.config.name if self.config is not None else DEFAULT_DATA

    @classmethod
    def spiral(cls, heldout: str = "between", **params) -> "Dataset":
        """The Cubist Spiral (``params``: fields of :class:`cubist.spiral.SpiralRecipe`)."""
        return cls.named("spiral", heldout, **params)

    @classmethod
    def named(cls, name: str = DEFAULT_DATA, heldout: str = "between", **params) -> "Dataset":
        """The registered data set ``name`` (``params``: fields of its recipe)."""
        return DataConfig(name, heldout, tuple(sorted(params.items()))).build()


@dataclass(frozen=True)
class DataConfig:
    """A data set of the registry: its name, the recipe fields that differ from the defaults (as
    sorted ``(field, value)`` pairs) and the held-out kind."""

    name: str = field(default=DEFAULT_DATA, metadata={"help": "data set of the registry", "flag": "data"})
    heldout: str = field(default="between", metadata={"help": "held-out companion set", "choices": HELDOUT_KINDS})
    recipe: tuple = field(default=(), metadata={"help": "recipe fields that differ from the defaults", "cli": False})

    def __post_init__(self):
        spec = get_dataset(self.name)
        if self.heldout not in HELDOUT_KINDS:
            raise ValueError(f"unknown held-out kind {self.heldout!r}; choose from {', '.join(HELDOUT_KINDS)}")
        recipe = dict(self.recipe)
        full = spec.recipe(**recipe).to_dict()  # validates names and values
        default = spec.recipe().to_dict()
        object.__setattr__(self, "recipe", tuple(sorted((k, v) for k, v in full.items() if v != default[k])))

    @property
    def spec(self) -> DataSpec:
        return get_dataset(self.name)

    def recipe_config(self):
        """The recipe dataclass instance (defaults filled in)."""
        return self.spec.recipe(**dict(self.recipe))

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        return self.spec.make(self.recipe_config(), split)

    def split_id(self, X: np.ndarray, y: np.ndarray, split: str = "train") -> str:
        """The id of the arrays of ``split`` (the training split's is the :class:`Dataset` id)."""
        return dataset_id(X, y, self.spec.meta(self.recipe_config(), split))

    def build(self) -> Dataset:
        X, y = self.arrays("train")
        Xh, yh = self.arrays(self.heldout)
        meta = {**self.spec.meta(self.recipe_config()), "heldout": self.heldout}
        return Dataset(X, y, Xh, yh, self.split_id(X, y), meta, self)

    def to_row(self) -> dict:
        """What a row's configuration records of the data set: only what differs from the default
        data set (so the rows of the spiral keep their run ids), ``{}`` for the paper's spiral."""
        out = {}
        if self.name != DEFAULT_DATA:
            out["name"] = self.name
        if self.recipe:
            out["recipe"] = dict(self.recipe)
        return out

    @classmethod
    def of_row(cls, row) -> "DataConfig":
        """The data set a stored result row (dict or DataFrame row) was trained on."""
        config = row["config"] if "config" in row else None
        config = json.loads(config) if isinstance(config, str) else (config or {})
        return cls.from_row(config.get("data"))

    @classmethod
    def from_row(cls, data: dict | None, heldout: str = "between") -> "DataConfig":
        """Inverse of :meth:`to_row` (``data``: the ``data`` entry of a row's configuration)."""
        data = data or {}
        return cls(data.get("name", DEFAULT_DATA), data.get("heldout", heldout),
                   tuple(sorted((data.get("recipe") or {}).items())))
