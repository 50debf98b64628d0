"""Prunable layers with a leading replica axis, and masking for plain modules.

One pruning strategy serves two kinds of model:

- :class:`BatchedMLP`: an ensemble of ``R`` spiral MLPs (Zhang & Papyan 2024) held as ONE
  module whose weights are ``(R, out, in)`` and biases ``(R, out)``; replica ``r`` is an
  independent run (its own init, data order, learning rate and mask). Every parameter of a
  batched model carries the replica axis first.
- any plain ``nn.Module`` whose ``nn.Linear`` / ``nn.Conv2d`` layers are made maskable by
  :func:`attach_masks` (the ``torch.nn.utils.prune`` mechanism: the trainable tensor becomes
  ``weight_orig``, a ``weight_mask`` buffer is added and a forward pre-hook sets
  ``weight = source * mask``). A plain module is treated as ``R = 1``.

:class:`Prunable` is the uniform handle the strategies see: ``weight()``, ``mask`` and
``param`` always come as ``(R, *weight_shape)`` views, whatever the model.

Masks act in the forward pass (so masked weights get no gradient) and are re-applied after
every optimiser step (so weight decay and momentum cannot revive them). A layer's weight may be
*reparametrised* (PILoT's ``m * w``, DWF's product of factors): :meth:`Prunable.set_reparam`
installs a module whose ``forward()`` returns the weight source; the mask multiplies its output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cubist.masks import bias_masks
from cubist.model import check_widths, init_weights


class BatchedLinear(nn.Module):
    """``R`` independent linear layers: ``y[r] = x[r] @ (W[r] * M[r]).T + b[r] * m[r]``."""

    def __init__(self, replicas: int, in_features: int, out_features: int):
        super().__init__()
        self.replicas, self.in_features, self.out_features = replicas, in_features, out_features
        self.weight = nn.Parameter(torch.zeros(replicas, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(replicas, out_features))
        self.register_buffer("weight_mask", torch.ones(replicas, out_features, in_features))
        self.register_buffer("bias_mask", torch.ones(replicas, out_features))
        self.reparam: nn.Module | None = None

    def weight_source(self) -> torch.Tensor:
        return self.weight if self.reparam is None else self.reparam()

    def effective_weight(self) -> torch.Tensor:
        return self.weight_source() * self.weight_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (R, B, in)
        b = (self.bias * self.bias_mask).unsqueeze(1)
        return torch.baddbmm(b, x, self.effective_weight().transpose(1, 2))

    def extra_repr(self):
        return f"replicas={self.replicas}, in_features={self.in_features}, out_features={self.out_features}"


class BatchedMLP(nn.Module):
    """``R`` MLPs ``widths[0] -> ... -> widths[-1]`` (ReLU between layers), trained at once.

    ``forward(x)``: ``x`` is ``(R, B, in)`` (each replica its own batch) or ``(B, in)`` (shared);
    the result is ``(R, B)`` for one logit, else ``(R, B, out)``.
    """

    def __init__(self, widths, replicas: int):
        super().__init__()
        self.widths = check_widths(widths)
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        self.replicas = replicas
        self.layers = nn.ModuleList(BatchedLinear(replicas, a, b) for a, b in zip(self.widths, self.widths[1:]))

    @classmethod
    def from_seeds(cls, widths, seeds, init_width: int | None = 16) -> "BatchedMLP":
        """Replica ``r`` initialised by :func:`cubist.model.init_weights` ``(widths, init_width, seeds[r])``."""
        model = cls(widths, len(seeds))
        cache = {}
        for r, s in enumerate(seeds):
            if s not in cache:
                cache[s] = init_weights(model.widths, init_width, int(s))
            model.load_replica(r, cache[s])
        return model

    @torch.no_grad()
    def load_replica(self, r: int, params) -> None:
        """Copy ``[(W, b), ...]`` into replica ``r``."""
        for layer, (w, b) in zip(self.layers, params):
            layer.weight[r].copy_(torch.as_tensor(w))
            layer.bias[r].copy_(torch.as_tensor(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.replicas, -1, -1)
        last = len(self.layers) - 1
        for l, layer in enumerate(self.layers):
            x = layer(x)
            if l < last:
                x = torch.relu_(x)  # in place: baddbmm's backward does not need its output
        return x.squeeze(-1) if self.widths[-1] == 1 else x

    def masks(self) -> list[np.ndarray]:
        """Weight masks as boolean numpy arrays ``(R, out, in)``."""
        return [layer.weight_mask.detach().cpu().numpy() != 0 for layer in self.layers]

    def all_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Masked ``[(W, b), ...]`` of all replicas, ``(R, out, in)`` and ``(R, out)`` float32 numpy."""
        with torch.no_grad():
            return [(layer.effective_weight().cpu().numpy(), (layer.bias * layer.bias_mask).cpu().numpy())
                    for layer in self.layers]

    def replica_params(self, r: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Masked ``[(W, b), ...]`` of replica ``r`` as float32 numpy arrays."""
        with torch.no_grad():
            return [(layer.effective_weight()[r].cpu().numpy().copy(),
                     (layer.bias * layer.bias_mask)[r].cpu().numpy().copy()) for layer in self.layers]


# -- plain modules ---------------------------------------------------------------------------
PLAIN_TYPES = (nn.Linear, nn.Conv2d)


def _plain_pre_hook(module, _inputs):
    mask = module.weight_mask
    if module.weight_reparam is None and getattr(module, "mask_by_gradient", False) and not mask.requires_grad:
        # the trainer's fast path (:meth:`Prunable.mask_by_gradient`): the masked entries of
        # weight_orig are 0, so weight_orig *is* the effective weight; a view keeps the
        # attribute a plain tensor (a Parameter would be registered under ``weight``)
        module.weight = module.weight_orig.view_as(module.weight_orig)
    else:
        module.weight = _plain_source(module) * mask
    if getattr(module, "bias_orig", None) is not None:
        module.bias = module.bias_orig * module.bias_mask


def _plain_source(module):
    rep = getattr(module, "weight_reparam", None)
    return module.weight_orig if rep is None else rep()


def attach_masks(model: nn.Module, types=PLAIN_TYPES) -> list[nn.Module]:
    """Make every ``types`` layer of a plain module maskable (idempotent); returns those layers.

    The trainable weight becomes ``weight_orig`` (and ``bias_orig``), masks are the buffers
    ``weight_mask`` / ``bias_mask`` (all ones at first), and a forward pre-hook computes
    ``weight = weight_orig * weight_mask`` before each forward.
    """
    out = []
    for module in model.modules():
        if not isinstance(module, types):
            continue
        if not hasattr(module, "weight_orig"):
            w = module._parameters.pop("weight")
            module.register_parameter("weight_orig", w)
            module.register_buffer("weight_mask", torch.ones_like(w, requires_grad=False))
            b = module._parameters.get("bias")
            if b is not None:
                del module._parameters["bias"]
                module.register_parameter("bias_orig", b)
                module.register_buffer("bias_mask", torch.ones_like(b, requires_grad=False))
            else:
                module.bias_orig = None
            module.weight_reparam = None
            module.mask_by_gradient = False
            module.register_forward_pre_hook(_plain_pre_hook)
            _plain_pre_hook(module, ())
        out.append(module)
    return out


# -- the uniform handle ----------------------------------------------------------------------
@dataclass(eq=False)
class Prunable:
    """One prunable layer seen with a leading replica axis.

    ``replicated``: the layer's own tensors already carry the replica axis (BatchedLinear);
    otherwise (plain Linear / Conv2d) every view gets a leading axis of length 1.
    """

    module: nn.Module
    replicated: bool

    def _r(self, t):
        return t if self.replicated or t is None else t.unsqueeze(0)

    @property
    def param(self) -> torch.nn.Parameter:
        """The raw trainable weight (no replica view: use :meth:`rview` on it when needed)."""
        return self.module.weight if self.replicated else self.module.weight_orig

    @property
    def bias_param(self):
        return self.module.bias if self.replicated else self.module.bias_orig

    def rview(self, t):
        """``t`` shaped like the layer's own tensors, viewed with the leading replica axis."""
        return self._r(t)

    @property
    def mask(self) -> torch.Tensor:
        """The 0/1 float weight mask, ``(R, *shape)`` (a view: in-place edits reach the buffer)."""
        return self._r(self.module.weight_mask)

    @property
    def bias_mask(self):
        bm = getattr(self.module, "bias_mask", None)
        return self._r(bm)

    @property
    def R(self) -> int:
        return self.mask.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """Weight shape of one replica: ``(out, in)`` or ``(out, in, kh, kw)``."""
        return tuple(self.mask.shape[1:])

    @property
    def numel(self) -> int:
        """Weights per replica."""
        return math.prod(self.shape)

    @property
    def reparam(self):
        return self.module.reparam if self.replicated else self.module.weight_reparam

    def source(self) -> torch.Tensor:
        """The unmasked weight (raw parameter or reparametrisation output), ``(R, *shape)``."""
        if self.replicated:
            return self.module.weight_source()
        return self._r(_plain_source(self.module))

    def weight(self) -> torch.Tensor:
        """The effective weight ``source * mask``, ``(R, *shape)``, in the autograd graph."""
        return self.source() * self.mask

    def set_reparam(self, reparam: nn.Module | None) -> None:
        """Install (or remove) a module whose ``forward()`` returns the weight source.

        For a batched layer the module must return ``(R, *shape)``; for a plain layer the
        layer's own shape. The raw parameter is frozen while a reparametrisation is installed
        (``requires_grad=False``) and unfrozen when it is removed; build the optimiser after.
        """
        if self.replicated:
            self.module.reparam = reparam
        else:
            self.module.weight_reparam = reparam
        self.param.requires_grad_(reparam is None)

    @property
    def gradient_maskable(self) -> bool:
        """True when :meth:`mask_by_gradient` applies: a plain layer with its raw weight."""
        return not self.replicated and self.reparam is None

    def mask_by_gradient(self, on: bool) -> None:
        """The training step's fast path for a plain layer (:attr:`gradient_maskable`).

        While on, forward passes use ``weight_orig`` itself instead of ``weight_orig * mask``
        (one pass over the weights less in the forward and one in the backward), and the caller
        must mask the gradient with :meth:`mask_grad_` before the optimiser step. Both give the
        same bits as the product: the masked entries of ``weight_orig`` are 0 (every mask change
        goes through :meth:`zero_masked_`), so ``w * 1 = w`` and ``0 * 0 = 0`` in the forward,
        and the product's backward is the same ``g * mask`` as :meth:`mask_grad_`; with the
        masked gradient 0 and the masked momentum cleared, SGD's update (momentum, weight decay,
        Nesterov) keeps the masked entries at exactly 0. A mask that requires grad (scoring by
        the gradient with respect to the mask) always takes the product.
        """
        self.module.mask_by_gradient = bool(on) and self.gradient_maskable

    @torch.no_grad()
    def mask_grad_(self) -> None:
        """Multiply the raw weight's gradient by the mask (in place; see :meth:`mask_by_gradient`)."""
        g = self.param.grad
        if g is not None:
            self.rview(g).mul_(self.mask)

    @torch.no_grad()
    def zero_masked_(self) -> None:
        """Zero the masked entries of the raw weight and bias."""
        if self.reparam is None:
            self.rview(self.param).mul_(self.mask)
        if self.bias_param is not None and self.bias_mask is not None:
            self.rview(self.bias_param).mul_(self.bias_mask)


def prunable_layers(model: nn.Module) -> list[Prunable]:
    """Handles on the prunable layers of ``model``, in module order.

    A :class:`BatchedMLP` (or any module with :class:`BatchedLinear` layers) gives replicated
    handles; otherwise every Linear/Conv2d is made maskable (:func:`attach_masks`).
    """
    batched = [m for m in model.modules() if isinstance(m, BatchedLinear)]
    if batched:
        return [Prunable(m, True) for m in batched]
    return [Prunable(m, False) for m in attach_masks(model)]


def replicas_of(model: nn.Module) -> int:
    layers = prunable_layers(model)
    return layers[0].R if layers else 1


def is_linear_chain(layers: list[Prunable]) -> bool:
    """True when the layers are fully connected and consecutive ones share their unit count."""
    if not layers or any(len(l.shape) != 2 for l in layers):
        return False
    return all(a.shape[0] == b.shape[1] for a, b in zip(layers, layers[1:]))


@torch.no_grad()
def update_bias_masks(layers: list[Prunable]) -> None:
    """Apply the paper's bias rule to a linear chain: a hidden unit keeps its bias only while
    it has an outgoing weight; the last layer's biases always stay. Other models: untouched."""
    if not is_linear_chain(layers):
        return
    for a, b in zip(layers, layers[1:]):
        if a.bias_mask is not None:
            a.bias_mask.copy_((b.mask != 0).any(dim=-2).to(a.bias_mask.dtype))


def layer_masks_numpy(layers: list[Prunable]) -> list[np.ndarray]:
    """Boolean weight masks ``(R, *shape)`` as numpy arrays."""
    return [l.mask.detach().cpu().numpy() != 0 for l in layers]


def check_bias_rule(layers: list[Prunable]) -> bool:
    """True when the bias masks follow :func:`cubist.masks.bias_masks` (linear chains only)."""
    if not is_linear_chain(layers):
        return True
    want = bias_masks(layer_masks_numpy(layers))
    got = [l.bias_mask.detach().cpu().numpy() != 0 for l in layers]
    return all(np.array_equal(w, g) for w, g in zip(want, got))


def plain_mlp(widths, params=None) -> nn.Sequential:
    """A plain ``nn.Sequential`` of ``nn.Linear`` + ReLU (the paper's per-run model), optionally
    loaded with ``[(W, b), ...]``. Its output is ``(B, 1)``; trainers squeeze it."""
    widths = check_widths(widths)
    mods = []
    for l, (a, b) in enumerate(zip(widths, widths[1:])):
        lin = nn.Linear(a, b)
        if params is not None:
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(params[l][0]))
                lin.bias.copy_(torch.as_tensor(params[l][1]))
        mods.append(lin)
        if l < len(widths) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


__all__ = ["BatchedLinear", "BatchedMLP", "Prunable", "attach_masks", "prunable_layers", "replicas_of",
           "is_linear_chain", "update_bias_masks", "layer_masks_numpy", "check_bias_rule", "plain_mlp"]
