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
        for p in self.params:
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            buf = self.state.get(p)
            if buf is None or not self.momentum:
                buf = torch.clone(g).detach()
                if self.momentum:
                    self.state[p] = buf
            else:
                buf.mul_(self.momentum).add_(g)
            upd = buf * self._view(lr, p)
            if active is None:
                p.sub_(upd)
            else:
                p.copy_(torch.where(self._view(active, p), p - upd, p))
