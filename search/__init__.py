"""Combinatorial search for the sparsest masks of the Cubist Spiral (Zhang & Papyan 2024, §3)."""
from .simd import configure as _configure_simd

_configure_simd()  # before numba compiles anything: the engine's vector width (search.simd)
from .enumerate import (  # noqa: F401
    canonical_mask, count_masks, enumerate_masks, iter_mask_batches, orbit_key, orbit_keys, rank_ranges,
    write_masks_parquet,
)
from .engine import EngineResult, train_masks  # noqa: F401

__all__ = [
    "canonical_mask", "count_masks", "enumerate_masks", "iter_mask_batches", "orbit_key", "orbit_keys",
    "rank_ranges", "write_masks_parquet",
    "EngineResult", "train_masks",
]
