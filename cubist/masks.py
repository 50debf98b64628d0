"""Mask arithmetic for MLPs: the paper's bias rule, connectivity and effective sparsity.

A mask of an MLP is a list of 0/1 arrays, one per layer, shaped ``(..., out, in)`` like the
weights (any leading axes, e.g. a replica axis, are carried through). Following
``ALGORITHMS.md`` §2 and §5 (Zhang & Papyan 2024, "Sparsest Models Elude Pruning"):

- a hidden unit keeps its bias only while it has at least one outgoing weight; the output
  units always keep theirs;
- a weight is *effective* when its input unit is reachable from some input and its output
  unit reaches some output along nonzero weights; other weights are on no input-to-output
  path and cannot influence the function beyond a constant;
- a hidden unit is *dead* when it lies on no input-to-output path.

This module is also the one home of the words every floor uses about masks and architectures:
:func:`widths_key` (an architecture as a tuple), :func:`dense_weight_count` (the weights of the
dense MLP), :func:`mask_key` (the identity of a mask) and :func:`hidden_unit_permutations` (the
symmetry group of one hidden layer; ALGORITHMS.md §3).
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np


def widths_key(widths) -> tuple[int, ...]:
    """A hashable ``(d0, d1, ..., dL)`` from a list, array or tuple of widths (``()`` for none/NaN)."""
    if widths is None or (isinstance(widths, float) and math.isnan(widths)):
        return ()
    return tuple(int(w) for w in widths)


def widths_label(widths) -> str:
    """``2-3-3-3-1`` for printing."""
    return "-".join(str(w) for w in widths_key(widths))


def dense_weight_count(widths) -> int:
    """Weights of the dense MLP ``widths`` (biases not counted, as in the paper's tables)."""
    w = widths_key(widths)
    return int(sum(a * b for a, b in zip(w, w[1:])))


@lru_cache(maxsize=16)
def hidden_unit_permutations(d: int, max_group: int | None = None) -> np.ndarray:
    """Every permutation of ``d`` hidden units, ``(d!, d)`` int64, lexicographic (read-only).

    Raises ValueError when ``d!`` exceeds ``max_group`` (the group is too large to list).
    """
    if max_group is not None and math.factorial(d) > max_group:
        raise ValueError(f"the symmetric group on {d} points is too large to list")
    out = np.array(list(itertools.permutations(range(d))), dtype=np.int64).reshape(math.factorial(d), d)
    out.setflags(write=False)
    return out


def _as_bool(masks) -> list[np.ndarray]:
    return [np.asarray(m) != 0 for m in masks]


def check_chain(masks) -> None:
    """Raise ValueError unless consecutive layer masks have matching unit counts."""
    masks = _as_bool(masks)
    if not masks:
        raise ValueError("a mask needs at least one layer")
    for i, (a, b) in enumerate(zip(masks, masks[1:])):
        if a.shape[-2] != b.shape[-1]:
            raise ValueError(f"layer {i} has {a.shape[-2]} outputs but layer {i + 1} takes {b.shape[-1]} inputs")


def bias_masks(masks) -> list[np.ndarray]:
    """Bias masks by the paper's rule: hidden biases live while the unit has an outgoing weight."""
    masks = _as_bool(masks)
    out = [m.any(axis=-2) for m in masks[1:]]  # unit j of layer l has an outgoing weight
    last = masks[-1]
    out.append(np.ones(last.shape[:-1], dtype=bool))
    return out


def reachability(masks) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Forward and backward reachability of every unit layer.

    Returns ``(fwd, bwd)``: ``fwd[l]`` marks the units of unit-layer ``l`` (0 = inputs) reached
    from some input, ``bwd[l]`` those that reach some output.
    """
    masks = _as_bool(masks)
    check_chain(masks)
    fwd = [np.ones(masks[0].shape[:-2] + masks[0].shape[-1:], dtype=bool)]
    for m in masks:
        fwd.append((m & fwd[-1][..., None, :]).any(axis=-1))
    bwd = [np.ones(masks[-1].shape[:-1], dtype=bool)]
    for m in reversed(masks):
        bwd.append((m & bwd[-1][..., :, None]).any(axis=-2))
    bwd.reverse()
    return fwd, bwd


def effective_masks(masks) -> list[np.ndarray]:
    """Weights on at least one input-to-output path (§5)."""
    masks = _as_bool(masks)
    fwd, bwd = reachability(masks)
    return [m & fwd[l][..., None, :] & bwd[l + 1][..., :, None] for l, m in enumerate(masks)]


def dead_units(masks) -> np.ndarray:
    """Number of hidden units on no input-to-output path (per leading index)."""
    fwd, bwd = reachability(masks)
    hidden = [f & b for f, b in zip(fwd[1:-1], bwd[1:-1])]
    if not hidden:
        return np.zeros(fwd[0].shape[:-1], dtype=np.int64)
    return sum((~h).sum(axis=-1) for h in hidden)


def mask_counts(masks) -> dict:
    """``weight_nnz``, ``bias_nnz``, ``effective_nnz`` and ``dead_units`` of a mask."""
    masks = _as_bool(masks)
    return {
        "weight_nnz": _total(m.sum(axis=(-2, -1)) for m in masks),
        "bias_nnz": _total(b.sum(axis=-1) for b in bias_masks(masks)),
        "effective_nnz": _total(m.sum(axis=(-2, -1)) for m in effective_masks(masks)),
        "dead_units": _scalar(dead_units(masks)),
    }


def _total(parts):
    return _scalar(sum(parts))


def _scalar(v):
    v = np.asarray(v)
    return int(v) if v.ndim == 0 else v.astype(np.int64)


def pack_masks(masks) -> tuple[bytes, list[list[int]]]:
    """Compact storage: the flattened layers' bits packed, and their shapes."""
    masks = _as_bool(masks)
    flat = np.concatenate([m.ravel() for m in masks])
    return np.packbits(flat).tobytes(), [list(m.shape) for m in masks]


def mask_key(masks) -> str:
    """The identity of a mask: its packed bits in hex (:func:`pack_masks`; unique within one
    architecture, which fixes the shapes). The search derives each mask's init seed from it."""
    return pack_masks(masks)[0].hex()


def unpack_masks(bits: bytes, shapes) -> list[np.ndarray]:
    """Inverse of :func:`pack_masks`."""
    sizes = [int(np.prod(s)) for s in shapes]
    flat = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=sum(sizes)).astype(bool)
    out, start = [], 0
    for s, n in zip(shapes, sizes):
        out.append(flat[start:start + n].reshape(s))
        start += n
    return out
