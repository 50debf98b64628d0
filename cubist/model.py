"""The masked MLP of the sparsest-model search (Zhang & Papyan 2024, §2 of ALGORITHMS.md).

``MaskedMLP(widths)`` is an MLP ``widths[0] -> ... -> widths[-1]`` with ReLU between layers and
one logit out. Every layer is a plain ``nn.Linear`` whose weight and bias are multiplied by 0/1
buffers in the forward pass (and after every optimiser step, see :meth:`apply_masks_`), so
masked entries stay exactly zero under momentum and weight decay.

Sub-networks are cut from a wider network's initialisation, as the paper's search does: the
parameters of a network whose hidden layers have ``init_width`` units are drawn with PyTorch's
default ``nn.Linear`` init (uniform +-1/sqrt(fan_in)), and the sub-network keeps the first
``d_l`` units of each layer. A (3, 3, 3) network thus has the init scale of the width-16 one,
and sub-networks of one seed are nested.
"""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .masks import bias_masks, mask_counts

DEFAULT_WIDTHS = (2, 16, 16, 16, 1)


def check_widths(widths) -> tuple[int, ...]:
    widths = tuple(int(w) for w in widths)
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"widths need at least an input and an output size, all >= 1; got {widths}")
    return widths


RANDOM_INIT = "random"


def run_init_seed(*identity) -> int:
    """The seed of a run's own random init, derived from what the run is (63 bits).

    The paper runs every configuration in its own unseeded process, so every run starts from its
    own random init. Here a run's init is drawn by :func:`init_weights` from this seed, a hash of
    the run's identity (e.g. ``("mask", widths, mask key, lr, schedule, k)``): two runs differ in
    init exactly when they differ in identity, whatever chunk, job or backend trains them, and a
    row that records the seed redraws its init. ``identity`` must be JSON-serialisable.
    """
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=_plain)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def _plain(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, (np.ndarray, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def init_weights(widths, init_width: int | None = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Weights and biases (float32, CPU) of a sub-network cut from a wider default init.

    Hidden layer ``l`` of the wide network has ``max(init_width, d_l)`` units (``init_width=None``:
    the network's own widths). Layers are drawn in order from one ``torch.Generator(seed)``:
    weight then bias, each uniform in +-1/sqrt(wide fan_in), and sliced to the first units.
    """
    widths = check_widths(widths)
    wide = [widths[0]] + [max(init_width or 0, d) for d in widths[1:-1]] + [widths[-1]]
    g = torch.Generator().manual_seed(int(seed))
    params = []
    for l in range(len(widths) - 1):
        bound = 1.0 / math.sqrt(wide[l])
        w = torch.empty(wide[l + 1], wide[l]).uniform_(-bound, bound, generator=g)
        b = torch.empty(wide[l + 1]).uniform_(-bound, bound, generator=g)
        params.append((w[: widths[l + 1], : widths[l]].contiguous(), b[: widths[l + 1]].contiguous()))
    return params


class MaskedMLP(nn.Module):
    """MLP with 0/1 weight masks and the paper's bias rule.

    ``masks``: one 0/1 array per layer shaped like its weight (``None``: dense).
    ``params``: explicit ``[(weight, bias), ...]`` (e.g. a saved width-16 init), sliced to
    ``widths`` when larger; otherwise drawn by :func:`init_weights` from ``seed``.
    """

    def __init__(self, widths=DEFAULT_WIDTHS, masks=None, *, init_width: int | None = 16, seed: int = 0,
                 params=None):
        super().__init__()
        self.widths = check_widths(widths)
        self.init_width = init_width
        self.seed = seed
        if params is None:
            params = init_weights(self.widths, init_width, seed)
        self.layers = nn.ModuleList()
        for l, (w, b) in enumerate(params):
            lin = nn.Linear(self.widths[l], self.widths[l + 1])
            w, b = torch.as_tensor(w, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
            if w.shape[0] < self.widths[l + 1] or w.shape[1] < self.widths[l]:
                raise ValueError(f"layer {l}: parameters {tuple(w.shape)} are smaller than the widths")
            with torch.no_grad():
                lin.weight.copy_(w[: self.widths[l + 1], : self.widths[l]])
                lin.bias.copy_(b[: self.widths[l + 1]])
            self.layers.append(lin)
            self.register_buffer(f"weight_mask_{l}", torch.ones_like(lin.weight))
            self.register_buffer(f"bias_mask_{l}", torch.ones_like(lin.bias))
        if len(params) != len(self.widths) - 1:
            raise ValueError(f"got {len(params)} layers of parameters for widths {self.widths}")
        self.set_masks(masks)

    # masks -----------------------------------------------------------------------------
    def weight_mask(self, l: int) -> torch.Tensor:
        return getattr(self, f"weight_mask_{l}")

    def bias_mask(self, l: int) -> torch.Tensor:
        return getattr(self, f"bias_mask_{l}")

    def masks(self) -> list[np.ndarray]:
        """The weight masks as boolean numpy arrays."""
        return [self.weight_mask(l).detach().cpu().numpy() != 0 for l in range(len(self.layers))]

    def set_masks(self, masks=None) -> "MaskedMLP":
        """Install weight masks (``None``: dense), derive the bias masks, zero masked entries."""
        if masks is None:
            masks = [np.ones(tuple(lin.weight.shape), dtype=bool) for lin in self.layers]
        masks = [np.asarray(m) != 0 for m in masks]
        if len(masks) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} layer masks, got {len(masks)}")
        for l, (m, lin) in enumerate(zip(masks, self.layers)):
            if m.shape != tuple(lin.weight.shape):
                raise ValueError(f"mask {l} has shape {m.shape}, weight has {tuple(lin.weight.shape)}")
        for l, (m, bm) in enumerate(zip(masks, bias_masks(masks))):
            self.weight_mask(l).copy_(torch.as_tensor(m, dtype=torch.float32))
            self.bias_mask(l).copy_(torch.as_tensor(bm, dtype=torch.float32))
        self.apply_masks_()
        return self

    @torch.no_grad()
    def apply_masks_(self) -> None:
        """Zero the masked weights and biases in place."""
        for l, lin in enumerate(self.layers):
            lin.weight.mul_(self.weight_mask(l))
            lin.bias.mul_(self.bias_mask(l))

    def counts(self) -> dict:
        """weight_nnz, bias_nnz, effective_nnz and dead_units of the current masks."""
        return mask_counts(self.masks())

    # computation -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for l, lin in enumerate(self.layers):
            x = F.linear(x, lin.weight * self.weight_mask(l), lin.bias * self.bias_mask(l))
            if l < last:
                x = torch.relu(x)
        return x.squeeze(-1) if self.widths[-1] == 1 else x

    def weights_numpy(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Masked weights and biases as float32 numpy arrays."""
        with torch.no_grad():
            return [((lin.weight * self.weight_mask(l)).cpu().numpy().copy(),
                     (lin.bias * self.bias_mask(l)).cpu().numpy().copy())
                    for l, lin in enumerate(self.layers)]
