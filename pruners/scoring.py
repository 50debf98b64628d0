"""What methods that score at initialisation over several batches, or through a modified network,
need beyond :class:`~pruners.base.PruneContext` (FORCE, Iter-SNIP, ProsPr).

- :func:`run_batch`: the ``k``-th batch of each replica's data order. ``ctx.batch(size)`` always
  returns the first one (``k = 0``); FORCE and ProsPr draw a fresh batch per step.
- :func:`loss_with`: ``ctx.loss`` of the model with some of its parameters or buffers replaced by
  other tensors (``torch.func.functional_call``), the model itself untouched. This is how a
  method differentiates with respect to something the weights are a function of: mask
  multipliers (FORCE's gradient at pruned weights, ProsPr's meta-gradient) or the weights after
  unrolled SGD steps (ProsPr).
- :func:`own`: a ``(R, *shape)`` tensor in the layout of the layer's own tensors.

Tested in ``tests/test_methods_force_prospr.py`` against plain PyTorch written out by hand.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cubist.train import epoch_permutation

from .layers import Prunable


def run_batch(ctx, k: int, size: int):
    """Per replica, batch ``k`` (0-based) of ``size`` points of its data order: the order of
    epoch 0, then epoch 1, ..., cut into ``n // size`` batches per epoch (drop_last), as the
    trainer cuts its batches. ``k = 0`` is ``ctx.batch(size)``; with ``size`` equal to the
    training batch size, batch ``k`` is the run's ``k``-th training batch. A ``size`` above the
    data's ``n`` points takes all of them (every batch holds all points, in a new order).

    Returns ``(x, y)`` shaped ``(R, size, ...)`` like ``ctx.batch``.
    """
    if k < 0 or size < 1:
        raise ValueError(f"need k >= 0 and size >= 1, got k={k}, size={size}")
    tr = ctx.trainer
    size = min(int(size), tr.n)
    per_epoch = tr.n // size
    epoch, j = divmod(int(k), per_epoch)
    idx = np.stack([epoch_permutation(s, epoch, tr.n)[j * size:(j + 1) * size] for s in tr.seeds])
    idx = torch.as_tensor(idx, device=tr.device)
    return tr.X[idx], tr.y[idx]


def own(layer: Prunable, t: torch.Tensor) -> torch.Tensor:
    """``t`` (``(R, *shape)``) in the layout of ``layer``'s own tensors (the inverse of ``rview``)."""
    return t if layer.replicated else t[0]


class _LossOf(nn.Module):
    """``ctx.loss`` as a module whose only submodule is the model (for ``functional_call``)."""

    def __init__(self, ctx):
        super().__init__()
        self.model = ctx.model
        self.ctx = ctx  # a plain attribute: not a module

    def forward(self, x, y, temperature):
        return self.ctx.loss(x, y, temperature)


def loss_with(ctx, replace, x, y, temperature: float = 1.0) -> torch.Tensor:
    """(R,) ``ctx.loss(x, y)`` with tensors of the model replaced for this one call.

    ``replace``: pairs ``(tensor, replacement)``; ``tensor`` is a parameter or buffer of
    ``ctx.model`` (e.g. ``layer.param``, ``layer.module.weight_mask``), ``replacement`` has its
    shape (the layer's own layout, see :func:`own`) and may carry an autograd graph.
    """
    names = {}
    for name, t in list(ctx.model.named_parameters()) + list(ctx.model.named_buffers()):
        names.setdefault(id(t), name)
    tensors = {}
    for t, v in replace:
        if id(t) not in names:
            raise ValueError("loss_with replaces only parameters and buffers of the model")
        if tuple(v.shape) != tuple(t.shape):
            raise ValueError(f"replacement of shape {tuple(v.shape)} for a tensor of shape {tuple(t.shape)}")
        tensors["model." + names[id(t)]] = v
    return torch.func.functional_call(_LossOf(ctx), tensors, (x, y, temperature))


__all__ = ["run_batch", "own", "loss_with"]
