"""Training of ``R`` replicas at once (or one plain module) by the paper's protocol.

The protocol is :mod:`cubist.train`'s (Zhang & Papyan 2024): SGD momentum 0.9, weight decay
5e-4 in PyTorch semantics, batch 128 with drop_last, the data order of epoch ``e`` from
:func:`cubist.train.epoch_permutation` ``(seed, e)``, the learning rate of an epoch from
:func:`cubist.train.lr_at`. Replica ``r`` of a :class:`~pruners.layers.BatchedMLP` follows
its own ``TrainConfig`` (seed, lr, schedule); the loss is the sum over replicas of each
replica's mean loss, so every replica gets exactly its own gradient, and
:class:`~pruners.optim.ReplicaSGD` applies its own learning rate. A plain module (R = 1) is
trained with ``torch.optim.SGD`` exactly like :func:`cubist.train.train_reference`.

Each :meth:`Trainer.train` call restarts the learning-rate schedule over its own length (what
IMP and LRR rounds need); the data order continues over a global epoch counter (round ``k``,
epoch ``e`` uses ``epoch_permutation(seed, k * epochs + e)``). A replica whose parameters
become non-finite at the end of an epoch is frozen from then on and reported as diverged.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from cubist.train import TrainConfig, correct_predictions, epoch_permutation, lr_at

from .layers import Prunable
from .optim import ReplicaSGD

LOSSES = ("bce", "ce")



@torch.no_grad()
def clear_masked_momentum(layer, momentum_buffer) -> None:
    """Zero the momentum of the masked weights and biases of one prunable ``layer``;
    ``momentum_buffer(param)`` gives a parameter's buffer (None before the first step)."""
    for p, m in ((layer.param, layer.mask), (layer.bias_param, layer.bias_mask)):
        if p is None or m is None or not p.requires_grad:
            continue
        buf = momentum_buffer(p)
        if buf is not None:
            layer.rview(buf).mul_(m)


@torch.no_grad()
def restore_parameters(model, layers, state: dict) -> None:
    """Copy saved parameters (by name) back into ``model`` and zero the masked entries of ``layers``
    (the masks are untouched): rewinding, for every trainer."""
    params = dict(model.named_parameters())
    for k, v in state.items():
        params[k].copy_(v)
    for l in layers:
        l.zero_masked_()

class Trainer:
    """Train ``model`` (batched when its layers are replicated) on ``X, y``.

    ``configs``: one :class:`cubist.train.TrainConfig` per replica; ``epochs``, ``batch_size``,
    ``momentum`` and ``weight_decay`` must agree across replicas. ``loss``: ``bce`` (one logit,
    labels 0/1) or ``ce`` (class logits, integer labels).
    """

    def __init__(self, model, layers: list[Prunable], X, y, configs: list[TrainConfig], *,
                 device: torch.device | str = "cpu", loss: str = "bce"):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
        self.model, self.layers, self.loss_kind = model, layers, loss
        self.device = torch.device(device)
        self.batched = layers[0].replicated
        self.R = layers[0].R
        if len(configs) != self.R:
            raise ValueError(f"{len(configs)} configs for {self.R} replicas")
        shared = {(c.epochs, c.batch_size, c.momentum, c.weight_decay) for c in configs}
        if len(shared) != 1:
            raise ValueError("replicas must share epochs, batch_size, momentum and weight_decay")
        self.configs = list(configs)
        c0 = configs[0]
        self.epochs, self.batch_size, self.momentum, self.weight_decay = c0.epochs, c0.batch_size, c0.momentum, c0.weight_decay
        self.X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X, device=self.device)
        ydtype = torch.float32 if loss == "bce" else torch.int64
        self.y = torch.as_tensor(np.asarray(y) if not torch.is_tensor(y) else y, device=self.device).to(ydtype)
        self.n = len(self.X)
        self.steps_per_epoch = self.n // self.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"{self.n} points are fewer than one batch of {self.batch_size}")
        self.seeds = [c.seed for c in configs]
        self._unique_seeds = sorted(set(self.seeds))
        self._seed_index = torch.tensor([self._unique_seeds.index(s) for s in self.seeds], device=self.device)
        self._identity_seeds = self._unique_seeds == self.seeds
        self.epoch_counter = 0   # global: data order
        self.step_counter = 0    # global: optimiser steps taken
        self.diverged = torch.zeros(self.R, dtype=torch.bool, device=self.device)
        self.last_batch = None   # (x, y) of the last optimiser step, leading replica axis (R, or 1 plain)
        self.epoch_callbacks: list[Callable[[], None]] = []  # e.g. a progress bar, after every epoch
        self.optimizer = None
        self.reset_optimizer()

    # optimiser -------------------------------------------------------------------------
    def parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def reset_optimizer(self) -> None:
        """A fresh optimiser (no momentum) over the current trainable parameters."""
        if self.batched:
            self.optimizer = ReplicaSGD(self.parameters(), self.R, self.momentum, self.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(self.parameters(), lr=self.configs[0].lr, momentum=self.momentum,
                                             weight_decay=self.weight_decay)

    def momentum_buffer(self, p: torch.Tensor):
        if self.batched:
            return self.optimizer.state.get(p)
        return self.optimizer.state.get(p, {}).get("momentum_buffer")

    @torch.no_grad()
    def masks_changed(self) -> None:
        """Clear the momentum of masked weights and biases (after a prune)."""
        for l in self.layers:
            clear_masked_momentum(l, self.momentum_buffer)

    # state -----------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Copies of all parameters (by name), for rewinding."""
        return {k: v.detach().clone() for k, v in self.model.named_parameters()}

    def restore(self, state: dict) -> None:
        """Copy saved parameters back (masks untouched) and zero the masked entries."""
        restore_parameters(self.model, self.layers, state)

    # batches and losses ----------------------------------------------------------------
    def _replica_out(self, out: torch.Tensor) -> torch.Tensor:
        if self.loss_kind == "bce" and out.shape[-1] == 1 and out.dim() >= 2 + self.batched:
            out = out.squeeze(-1)
        return out if self.batched else out.unsqueeze(0)

    def replica_outputs(self, x) -> torch.Tensor:
        """Model outputs with a leading replica axis; ``x``: ``(R, B, ...)`` or ``(1, B, ...)`` (plain)."""
        return self._replica_out(self.model(x if self.batched else x[0]))

    def replica_losses(self, x, y, temperature: float = 1.0) -> torch.Tensor:
        """(R,) mean loss per replica of the outputs divided by ``temperature``."""
        out = self.replica_outputs(x)
        return self._loss(out / temperature if temperature != 1.0 else out, y)

    def _loss(self, out, y) -> torch.Tensor:
        if self.loss_kind == "bce":
            return F.binary_cross_entropy_with_logits(out, y, reduction="none").mean(-1)
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none").view(y.shape).mean(-1)

    def _correct(self, out, y) -> torch.Tensor:
        """Right predictions per replica (:func:`cubist.train.correct_predictions`)."""
        return correct_predictions(out, y).sum(-1)

    def _epoch_batches(self, epoch: int):
        bs, steps = self.batch_size, self.steps_per_epoch
        idx = np.stack([epoch_permutation(s, epoch, self.n)[: steps * bs] for s in self._unique_seeds])
        idx = torch.as_tensor(idx, device=self.device).view(len(self._unique_seeds), steps, bs)
        return self.X[idx], self.y[idx]  # (S, steps, bs, ...)

    def scoring_batch(self, size: int | None = None):
        """Per replica, the first ``size`` points of its epoch-0 order: ``(R, size, ...)``."""
        size = size or self.batch_size
        idx = np.stack([epoch_permutation(s, 0, self.n)[:size] for s in self.seeds])
        idx = torch.as_tensor(idx, device=self.device)
        return self.X[idx], self.y[idx]

    def lrs(self, epoch: int, epochs: int) -> torch.Tensor:
        return torch.tensor([lr_at(c.schedule, c.lr, epoch, epochs) for c in self.configs],
                            dtype=torch.float32, device=self.device)

    # training --------------------------------------------------------------------------
    @property
    def halted(self) -> bool:
        """A plain module whose run diverged: :meth:`train` takes no more steps (a batched model
        freezes diverged replicas and trains on)."""
        return not self.batched and bool(self.diverged.all())

    def train(self, epochs: int | None = None, *, penalty: Callable[[], torch.Tensor | None] | None = None,
              after_step: Callable[[int], None] | None = None, after_epoch: Callable[..., None] | None = None,
              track_accuracy: bool = False) -> None:
        """Train for ``epochs`` (default: the configs' epochs) with a fresh LR schedule.

        ``penalty()``: added to the loss (scalar or ``(R,)``); ``after_step(step)``: called after
        each step with the global step count (the step's batch is :attr:`last_batch`);
        ``after_epoch(epoch, epochs, train_acc, loss)``.
        """
        epochs = self.epochs if epochs is None else epochs
        steps, bs = self.steps_per_epoch, self.batch_size
        self.model.train()
        for e in range(epochs):
            if self.halted:
                break
            lr = self.lrs(e, epochs)
            if not self.batched:
                for group in self.optimizer.param_groups:
                    group["lr"] = float(lr[0])
            xs, ys = self._epoch_batches(self.epoch_counter)
            correct = torch.zeros(self.R, device=self.device)
            loss_sum = torch.zeros(self.R, device=self.device)
            active = None if not bool(self.diverged.any()) else ~self.diverged
            for s in range(steps):
                if self.batched:
                    if self._identity_seeds:
                        xb, yb = xs[:, s], ys[:, s]
                    else:
                        xb, yb = xs[self._seed_index, s], ys[self._seed_index, s]
                    out = self.model(xb)
                else:
                    xb, yb = xs[0, s], ys[0, s].unsqueeze(0)
                    out = self.model(xb)
                    if self.loss_kind == "bce" and out.dim() == 2 and out.shape[-1] == 1:
                        out = out.squeeze(-1)
                    out = out.unsqueeze(0)
                self.last_batch = (xb, yb) if self.batched else (xb.unsqueeze(0), yb)
                losses = self._loss(out, yb)
                total = losses.sum()
                if penalty is not None:
                    pen = penalty()
                    if pen is not None:
                        total = total + pen.sum()
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                if self.batched:
                    self.optimizer.step(lr, active)
                else:
                    self.optimizer.step()
                for l in self.layers:
                    l.zero_masked_()
                self.step_counter += 1
                with torch.no_grad():
                    loss_sum += losses.detach()
                    if track_accuracy:
                        correct += self._correct(out.detach(), yb)
                if after_step is not None:
                    after_step(self.step_counter)
            self.epoch_counter += 1
            self._check_divergence()
            if after_epoch is not None:
                after_epoch(e, epochs, correct / (steps * bs), loss_sum / steps)
            for cb in self.epoch_callbacks:
                cb()

    @torch.no_grad()
    def _check_divergence(self) -> None:
        ok = torch.ones(self.R, dtype=torch.bool, device=self.device)
        for p in self.model.parameters():
            pr = p if self.batched else p.unsqueeze(0)
            ok &= torch.isfinite(pr.reshape(self.R, -1)).all(1)
        self.diverged |= ~ok

    @torch.no_grad()
    def evaluate(self, X, y, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(accuracy, mean loss) per replica ``(R,)`` on a shared set (``logit > 0`` = class 1)."""
        chunk = chunk or max(256, (1 << 22) // (self.R * 16))
        was_training = self.model.training
        self.model.eval()
        try:
            return self._evaluate(X, y, chunk)
        finally:
            self.model.train(was_training)

    def _evaluate(self, X, y, chunk: int):
        X = torch.as_tensor(X, device=self.device)
        y = torch.as_tensor(y, device=self.device).to(self.y.dtype)
        correct = torch.zeros(self.R, device=self.device, dtype=torch.float64)
        loss = torch.zeros(self.R, device=self.device, dtype=torch.float64)
        for s in range(0, len(X), chunk):
            out = self.model(X[s:s + chunk])
            if self.loss_kind == "bce" and out.shape[-1] == 1 and out.dim() >= 2 + self.batched:
                out = out.squeeze(-1)
            if not self.batched:
                out = out.unsqueeze(0)
            t = y[s:s + chunk].unsqueeze(0).expand(self.R, *y[s:s + chunk].shape)
            correct += self._correct(out, t).double()
            if self.loss_kind == "bce":
                loss += F.binary_cross_entropy_with_logits(out, t, reduction="none").sum(-1).double()
            else:
                loss += F.cross_entropy(out.reshape(-1, out.shape[-1]), t.reshape(-1), reduction="none"
                                        ).view(t.shape).sum(-1).double()
        return correct / len(X), loss / len(X)
