"""SGD with one learning rate per replica, in PyTorch's semantics.

For every parameter ``p`` of a batched model (leading replica axis ``R``)::

    g   = p.grad + weight_decay * p
    buf = g                      (first step)
    buf = momentum * buf + g     (later steps)
    p  -= lr[r] * buf            (replica r)

which is ``torch.optim.SGD(lr, momentum, weight_decay)`` (no dampening, no Nesterov) run on
each replica separately. Replicas marked inactive (e.g. diverged) are left untouched.
"""
from __future__ import annotations

import torch


class ReplicaSGD:
    def __init__(self, params, replicas: int, momentum: float = 0.9, weight_decay: float = 5e-4):
        self.params = [p for p in params if p.requires_grad]
        for p in self.params:
            if p.dim() == 0 or p.shape[0] != replicas:
                raise ValueError(f"parameter of shape {tuple(p.shape)} has no leading replica axis of {replicas}")
        self.replicas, self.momentum, self.weight_decay = replicas, momentum, weight_decay
        self.state: dict[torch.Tensor, torch.Tensor] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def reset(self) -> None:
        """Forget the momentum buffers."""
        self.state.clear()

    def _view(self, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *([1] * (p.dim() - 1)))

    @torch.no_grad()
    def step(self, lr: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """One step; ``lr``: ``(R,)`` on the parameters' device; ``active``: ``(R,)`` bool or None."""
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        if self.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.momentum:
            fresh = [i for i, p in enumerate(params) if p not in self.state]
            old = [i for i, p in enumerate(params) if p in self.state]
            if old:
                bufs = [self.state[params[i]] for i in old]
                torch._foreach_mul_(bufs, self.momentum)
                torch._foreach_add_(bufs, [grads[i] for i in old])
            for i in fresh:
                self.state[params[i]] = torch.clone(grads[i]).detach()
            steps = [self.state[p] for p in params]
        else:
            steps = grads
        upd = torch._foreach_mul(steps, [self._view(lr, p) for p in params])
        if active is None:
            torch._foreach_sub_(params, upd)
        else:
            for p, u in zip(params, upd):
                p.copy_(torch.where(self._view(active, p), p - u, p))
