"""Effective density of conv nets (residual connections and BatchNorm included), per channel.

A weight counts only when it lies on some input-to-output path of nonzero weights
(ALGORITHMS.md section 5; the sparsest paper's "disconnected paths"). For a conv net the units
are channels: weight ``W[o, i, kh, kw]`` of a layer is *effective* when it is unmasked, its input
channel ``i`` is reachable from the network's input and its output channel ``o`` reaches the
output.

Both reachabilities come from one forward and one backward pass of a copy of the network in
float64 whose weights are the 0/1 masks (each output's row scaled by ``1 / its nonzeros``, so
values neither overflow nor vanish over many layers), biases 0, and every BatchNorm made the
identity on its channel (mean 0, variance 1 - eps, shift 0, scale 1 where gamma != 0, else 0):
a channel cut off upstream stays exactly 0 after its BatchNorm, whose shift would otherwise make
it look alive. On an all-ones input every value is then >= 0, so ReLU, max / average pooling and
residual additions only pass reachability on: a channel is reachable iff its activation is
positive somewhere, and it reaches the output iff the gradient of the summed output with respect
to it is positive somewhere. Any module graph works (torchvision ResNets, VGG, MobileNet with
grouped convs); layers with a reparametrisation are taken with their current mask.

Tested in ``tests/test_imagenet_connectivity.py`` against counts made by hand on a small ResNet.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .layers import Prunable


@torch.no_grad()
def _identity_batchnorm(m: nn.modules.batchnorm._BatchNorm) -> None:
    if m.running_mean is not None:
        m.running_mean.zero_()
        m.running_var.fill_(1.0 - m.eps)
    else:  # no running statistics: force eval-style use of the affine part only
        m.track_running_stats = True
        m.register_buffer("running_mean", torch.zeros(m.num_features, dtype=torch.float64))
        m.register_buffer("running_var", torch.full((m.num_features,), 1.0 - m.eps, dtype=torch.float64))
    if m.affine:
        m.weight.copy_((m.weight != 0).to(m.weight.dtype))
        m.bias.zero_()


def effective_masks(model: nn.Module, layers: list[Prunable], input_shape) -> list[torch.Tensor]:
    """Per layer of ``layers`` (plain Linear / Conv2d of ``model``), the boolean effective mask,
    shaped like the layer's weight. ``input_shape``: one example's shape, e.g. ``(3, 224, 224)``."""
    names = {id(m): n for n, m in model.named_modules()}
    missing = [l for l in layers if id(l.module) not in names]
    if missing or any(l.replicated for l in layers):
        raise ValueError("effective_masks takes plain layers of the model given")
    device = layers[0].mask.device
    # the weights a forward pre-hook computed (``weight = weight_orig * mask``) are not leaves:
    # leave them out of the copy (its own pre-hooks compute them again)
    memo = {id(t): None for m in model.modules() for t in (getattr(m, "weight", None), getattr(m, "bias", None))
            if torch.is_tensor(t) and not t.is_leaf}
    twin = copy.deepcopy(model, memo).to(device=device, dtype=torch.float64)
    twin.eval()
    mods = dict(twin.named_modules())
    copies = [mods[names[id(l.module)]] for l in layers]
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                _identity_batchnorm(m)
        for m in copies:
            m.weight_reparam = None
            mask = (m.weight_mask != 0).to(torch.float64)
            rows = mask.reshape(mask.shape[0], -1).sum(1).clamp(min=1)
            m.weight_orig.copy_(mask / rows.view(-1, *([1] * (mask.dim() - 1))))
            if getattr(m, "bias_orig", None) is not None:
                m.bias_orig.zero_()
    seen: dict[int, tuple] = {}

    def hook(mod, inputs, output):
        output.retain_grad()
        seen[id(mod)] = (inputs[0].detach(), output)

    handles = [m.register_forward_hook(hook) for m in copies]
    try:
        for p in twin.parameters():
            p.requires_grad_(True)
        x = torch.ones(1, *input_shape, dtype=torch.float64, device=device)
        with torch.enable_grad():
            out = twin(x)
            out.sum().backward()
    finally:
        for h in handles:
            h.remove()
    result = []
    for l, m in zip(layers, copies):
        if id(m) not in seen:  # a layer the forward pass never used: nothing of it is effective
            result.append(torch.zeros_like(l.module.weight_mask, dtype=torch.bool))
            continue
        inp, outp = seen[id(m)]
        grad = outp.grad if outp.grad is not None else torch.zeros_like(outp)
        if isinstance(m, nn.Conv2d):
            fwd = inp.abs().amax(dim=(0, 2, 3)) > 0                   # (in,)
            bwd = grad.abs().amax(dim=(0, 2, 3)) > 0                  # (out,)
            out_c, in_g = m.weight_mask.shape[:2]
            per_group = out_c // m.groups
            group = torch.arange(out_c, device=device) // per_group
            in_idx = group[:, None] * in_g + torch.arange(in_g, device=device)[None, :]  # (out, in_g)
            ok = fwd[in_idx] & bwd[:, None]
            eff = (m.weight_mask != 0) & ok[:, :, None, None]
        else:
            fwd = inp.abs().reshape(-1, inp.shape[-1]).amax(0) > 0
            bwd = grad.abs().reshape(-1, grad.shape[-1]).amax(0) > 0
            eff = (m.weight_mask != 0) & bwd[:, None] & fwd[None, :]
        result.append(eff.to(l.module.weight_mask.device))
    return result


def connectivity_counts(model: nn.Module, layers: list[Prunable], input_shape) -> dict:
    """Weight nonzeros, effective nonzeros, dead output channels per layer (channels with no
    effective weight), dense weight count, and the two densities."""
    eff = effective_masks(model, layers, input_shape)
    nnz = [int((l.module.weight_mask != 0).sum()) for l in layers]
    enz = [int(e.sum()) for e in eff]
    dead = [int((e.reshape(e.shape[0], -1).sum(1) == 0).sum()) for e in eff]
    total = sum(l.numel for l in layers)
    return {"weight_nnz": sum(nnz), "effective_nnz": sum(enz), "dense_weights": total,
            "density": sum(nnz) / total, "effective_density": sum(enz) / total,
            "layer_nnz": nnz, "layer_effective_nnz": enz, "dead_channels": dead}


__all__ = ["effective_masks", "connectivity_counts"]
