"""The paper's training protocol, and the reference trainer that follows it for one model.

Protocol (Zhang & Papyan 2024; ALGORITHMS.md §2): BCE-with-logits on one logit; SGD with
momentum 0.9 and weight decay 5e-4 in PyTorch semantics (decay added to the gradient, biases
decayed too); batch 128 with drop_last (390 steps per epoch on the spiral); data reshuffled
every epoch; 50 epochs; learning-rate schedule per epoch: cosine annealing, step decay x0.1 at
epochs 15 and 30, or constant. Accuracy is ``logit > 0`` against the labels, a non-finite logit
wrong (:func:`correct_predictions`, the one home of that rule).

Everything another engine needs to reproduce a run bit for bit is a pure function here:
:func:`lr_at` (the learning rate of an epoch) and :func:`epoch_permutation` (the data order
of an epoch, from the run's seed). The reference trainer uses no DataLoader: each epoch's
batches are one gather into a contiguous tensor.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (the paper's protocol on defaults)."""

    lr: float = field(default=0.1, metadata={"help": "base learning rate"})
    schedule: str = field(default="cosine", metadata={"help": "learning-rate schedule", "choices": SCHEDULES})
    epochs: int = field(default=50, metadata={"help": "epochs of training"})
    batch_size: int = field(default=128, metadata={"help": "batch size (last partial batch dropped)"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = field(default=5e-4, metadata={"help": "SGD weight decay (added to the gradient)"})
    seed: int = field(default=0, metadata={"help": "seed of the init and of the data order"})

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def protocol_field(name: str, **metadata):
    """A dataclass field that is the protocol's field ``name`` of :class:`TrainConfig`: its default
    and help, for the configs that carry the protocol (the search grid, the pruner sweeps), so a
    default of the protocol lives in one place."""
    f = TrainConfig.__dataclass_fields__[name]
    return field(default=f.default, metadata={**f.metadata, **metadata})


def step_milestones(epochs: int) -> tuple[int, int]:
    """Epochs at which the step schedule decays x0.1: 15 and 30 of 50, scaled for other lengths."""
    return (round(0.3 * epochs), round(0.6 * epochs))


def lr_at(schedule: str, base_lr: float, epoch: int, epochs: int) -> float:
    """Learning rate used throughout epoch ``epoch`` (0-based) of ``epochs``.

    cosine: ``base * (1 + cos(pi * epoch / epochs)) / 2`` (CosineAnnealingLR with T_max=epochs,
    eta_min=0, stepped per epoch, in closed form); step: ``base * 0.1**(number of milestones
    <= epoch)``; constant: ``base``.
    """
    if schedule == "cosine":
        return base_lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
    if schedule == "step":
        return base_lr * 0.1 ** sum(epoch >= m for m in step_milestones(epochs))
    if schedule == "constant":
        return base_lr
    raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The data order of one epoch of the run with ``seed`` (int64 indices)."""
    return np.random.default_rng([int(seed), int(epoch), 0xC0B1]).permutation(n)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device cuda asked for but CUDA is not available")
    return torch.device(device)


@dataclass
class TrainResult:
    train_acc: float
    final_loss: float
    diverged: bool
    epochs_run: int
    wall_time_s: float
    heldout_acc: float | None = None


def correct_predictions(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Boolean tensor of ``targets``' shape: which predictions are right; a non-finite logit is wrong.

    One logit per point (``logits`` with as many axes as ``targets``, BCE): right when
    ``(logit > 0) == target`` and the logit is finite. Class logits ``(..., C)`` against class
    indices ``(...)`` (cross-entropy): right when ``argmax == target`` and all ``C`` logits are
    finite. Every evaluator of the protocol counts accuracy by this rule (the numba engine,
    which cannot call torch, spells it out in ``search.engine._evaluate_model``).
    """
    if logits.dim() == targets.dim():
        return ((logits > 0).to(targets.dtype) == targets) & torch.isfinite(logits)
    if logits.dim() == targets.dim() + 1:
        return (logits.argmax(-1) == targets) & torch.isfinite(logits).all(-1)
    raise ValueError(f"logits of shape {tuple(logits.shape)} do not fit targets of shape {tuple(targets.shape)}: "
                     "give one logit per target, or class logits on a last axis")


@torch.no_grad()
def evaluate(model, X: torch.Tensor, y: torch.Tensor, chunk: int = 65536) -> tuple[float, float]:
    """(accuracy, mean BCE loss) of ``model`` on ``X, y``; right as :func:`correct_predictions`."""
    correct, loss = 0, 0.0
    for s in range(0, len(X), chunk):
        z = model(X[s:s + chunk])
        t = y[s:s + chunk]
        correct += int(correct_predictions(z, t).sum())
        loss += float(F.binary_cross_entropy_with_logits(z, t, reduction="sum"))
    return correct / len(X), loss / len(X)


def _params_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def train_reference(model, X, y, config: TrainConfig = TrainConfig(), *, device: str = "auto",
                    X_heldout=None, y_heldout=None) -> TrainResult:
    """Train ``model`` (a :class:`~cubist.model.MaskedMLP`) in place by the paper's protocol.

    Divergence (a non-finite parameter at the end of an epoch) stops training and is reported
    as ``diverged=True``, never raised.
    """
    dev = resolve_device(device)
    t0 = time.perf_counter()
    model.to(dev)
    X = torch.as_tensor(np.asarray(X, dtype=np.float32), device=dev)
    y = torch.as_tensor(np.asarray(y, dtype=np.float32), device=dev)
    n, bs = len(X), config.batch_size
    steps = n // bs
    if steps < 1:
        raise ValueError(f"{n} points are fewer than one batch of {bs}")
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    diverged, epochs_run = False, 0
    for epoch in range(config.epochs):
        lr = lr_at(config.schedule, config.lr, epoch, config.epochs)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.as_tensor(epoch_permutation(config.seed, epoch, n)[: steps * bs], device=dev)
        xb_all = X.index_select(0, idx).view(steps, bs, -1)
        yb_all = y.index_select(0, idx).view(steps, bs)
        for s in range(steps):
            loss = F.binary_cross_entropy_with_logits(model(xb_all[s]), yb_all[s])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.apply_masks_()
        epochs_run += 1
        if not _params_finite(model):
            diverged = True
            break
    acc, final_loss = evaluate(model, X, y)
    diverged = diverged or not math.isfinite(final_loss)
    heldout = None
    if X_heldout is not None:
        Xh = torch.as_tensor(np.asarray(X_heldout, dtype=np.float32), device=dev)
        yh = torch.as_tensor(np.asarray(y_heldout, dtype=np.float32), device=dev)
        heldout = evaluate(model, Xh, yh)[0]
    return TrainResult(acc, final_loss, diverged, epochs_run, time.perf_counter() - t0, heldout)
