"""A trainer for any ``nn.Module`` fed by a ``DataLoader``, with DistributedDataParallel: the
trainer the pruning procedures drive at ImageNet scale.

:class:`LoaderTrainer` offers what :class:`~pruners.base.PruneContext` and the five procedures
of :mod:`pruners.procedures` ask of a trainer (``train``, ``snapshot``/``restore``,
``reset_optimizer``, ``masks_changed``, ``momentum_buffer``, ``scoring_batch``,
``replica_losses``, ``last_batch``, ``step_counter``, ``epochs``, ``steps_per_epoch``, ``X``/``y``,
``evaluate``, ``lrs``), so every registered method runs unchanged on a torchvision model. The
model is a plain module (``R = 1``); the data never sit on the device whole:

- training batches come from ``train_loader`` (a ``DistributedSampler`` under DDP: every epoch
  calls ``set_epoch(global epoch)``; ``drop_last`` so every process takes the same steps);
- *scoring* batches (SNIP, GraSP, FORCE, ProsPr, PILoT's probe) come from a fixed pool of
  training images (``score_pool()``, loaded on first use, with the evaluation transform, the
  same images on every process), held as ``X``/``y`` so :func:`pruners.scoring.run_batch` and
  ``ctx.batch`` cut it exactly as they cut the spiral.

Under DDP (``dist.world > 1``) the forward pass of a training step goes through the DDP wrapper
(gradients averaged over processes; buffers, masks included, broadcast from rank 0); methods see
the bare module (``model``), so their scoring passes never enter a collective. Every process runs
the same procedure on the same pool, and :meth:`masks_changed` broadcasts rank 0's masks, so the
processes hold the same masks after every prune. The wrapper is rebuilt when the set of trainable
tensors changes (a reparametrisation installed or folded).

The learning rate is a pure function of the optimiser step within a training call
(:func:`lr_at_step`: linear warm-up, then cosine / step at ``milestones`` / constant), restarted
by every call (what IMP and LRR rounds need). Mixed precision (bf16 or fp16 with a GradScaler)
and channels-last apply on CUDA only.

Resume: :meth:`state_dict` holds counters, optimiser, scaler, snapshots and RNG states.
:class:`Replay` re-runs a procedure from its start without training: epochs before the
checkpoint are skipped (the step callbacks still run, so a procedure's own bookkeeping is
rebuilt; the method's hooks and scores are muted by :func:`guard_method`), and at the end of the
checkpoint's epoch the saved state is loaded. From there the run is the uninterrupted run, bit
for bit on CPU.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cubist.train import epoch_permutation

from .layers import Prunable
from .train import clear_masked_momentum, restore_parameters

SCHEDULES = ("cosine", "step", "constant")


# -- processes --------------------------------------------------------------------------------
@dataclass
class Dist:
    """Where this process stands: ``rank`` of ``world`` processes, its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over processes (float64 on the device's own backend; a copy)."""
        if self.world == 1:
            return t.clone()
        import torch.distributed as td
        out = t.clone()
        td.all_reduce(out, op=td.ReduceOp.SUM)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td
            td.barrier()

    def broadcast_(self, t: torch.Tensor) -> None:
        if self.world > 1:
            import torch.distributed as td
            td.broadcast(t, 0)


def init_dist(device: str = "auto") -> Dist:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): NCCL on CUDA, gloo on CPU.
    Without torchrun: one process."""
    import os
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available")
    dev = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1:
        import torch.distributed as td
        if not td.is_initialized():
            td.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, local, dev)


# -- the learning rate ------------------------------------------------------------------------
def lr_at_step(step: int, total: int, *, lr: float, schedule: str, warmup_steps: int = 0,
               milestones: tuple = (), gamma: float = 0.1) -> float:
    """Learning rate of optimiser step ``step`` (0-based) of a training call of ``total`` steps.

    Linear warm-up over ``warmup_steps`` (from ``lr / warmup_steps`` to ``lr``), then
    ``cosine`` (half a cosine from ``lr`` to 0 over the remaining steps), ``step`` (times
    ``gamma`` at every milestone step passed) or ``constant``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "cosine":
        span = max(1, total - warmup_steps)
        return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / span))
    if schedule == "step":
        return lr * gamma ** sum(step >= m for m in milestones)
    return lr


# -- the trainer ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """How the trainer trains (one run; every training call of a procedure uses it)."""

    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: tuple = ()          # epochs of a full-length call (scaled for shorter calls)
    label_smoothing: float = 0.0
    seed: int = 0
    amp: str = "none"               # none | bf16 | fp16 (CUDA only)
    channels_last: bool = False     # CUDA only


class LoaderTrainer:
    """Train a plain module ``model`` (its prunable ``layers``) on ``train_loader`` by ``recipe``.

    ``score_pool()`` returns ``(X, y)`` CPU tensors of training images for scoring batches (loaded
    once, on first use). ``dist``: the processes (:func:`init_dist`). ``kill_at_step``: a test
    hook, the process SIGKILLs itself after that global optimiser step.
    """

    batched = False
    R = 1
    loss_kind = "ce"

    def __init__(self, model: nn.Module, layers: list[Prunable], train_loader, recipe: Recipe, *,
                 dist: Dist | None = None, score_pool: Callable[[], tuple] | None = None,
                 kill_at_step: int | None = None):
        self.model, self.layers, self.loader, self.recipe = model, layers, train_loader, recipe
        self.dist = dist or Dist()
        self.device = self.dist.device
        self.epochs = recipe.epochs
        self.momentum, self.weight_decay = recipe.momentum, recipe.weight_decay
        self.batch_size = train_loader.batch_size
        self.steps_per_epoch = len(train_loader)
        if self.steps_per_epoch < 1:
            raise ValueError(f"the training set gives no full batch of {self.batch_size} per process")
        self.seeds = [int(recipe.seed)]
        self._score_pool = score_pool
        self._pool = None
        self.kill_at_step = kill_at_step
        self.epoch_counter = 0
        self.step_counter = 0
        self.diverged = torch.zeros(1, dtype=torch.bool)
        self.last_batch = None
        self.last_epoch: dict = {}      # images, seconds, train top-1 and loss of the last epoch trained
        self.epoch_callbacks: list[Callable[[], None]] = []
        self.replay: "Replay | None" = None
        self.snapshots: list[dict] = []
        cuda = self.device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.amp) if cuda else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None
        self.channels_last = recipe.channels_last and cuda
        self.net = model
        self._net_key = None
        self.optimizer = None
        self.reset_optimizer()

    # pool of scoring images ---------------------------------------------------------------
    def _load_pool(self):
        if self._pool is None:
            if self._score_pool is None:
                raise ValueError("this trainer has no scoring pool")
            X, y = self._score_pool()
            self._pool = (X.to(self.device), y.to(self.device, torch.int64))
        return self._pool

    @property
    def X(self) -> torch.Tensor:
        return self._load_pool()[0]

    @property
    def y(self) -> torch.Tensor:
        return self._load_pool()[1]

    @property
    def n(self) -> int:
        return len(self.X)

    @property
    def replaying(self) -> bool:
        return self.replay is not None

    # optimiser and DDP --------------------------------------------------------------------
    def parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def reset_optimizer(self) -> None:
        """A fresh SGD (no momentum) over the current trainable parameters."""
        r = self.recipe
        self.optimizer = torch.optim.SGD(self.parameters(), lr=r.lr, momentum=r.momentum,
                                         weight_decay=r.weight_decay, nesterov=r.nesterov and r.momentum > 0)

    def _wrap(self) -> None:
        """(Re)build the DDP wrapper when the trainable tensors changed (a collective)."""
        key = tuple(id(p) for p in self.parameters())
        if self.dist.world == 1 or key == self._net_key:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.net = DDP(self.model, device_ids=ids)
        self._net_key = key

    def momentum_buffer(self, p: torch.Tensor):
        return self.optimizer.state.get(p, {}).get("momentum_buffer")

    @torch.no_grad()
    def masks_changed(self) -> None:
        """After a prune: rank 0's masks everywhere; momentum of masked weights and biases cleared."""
        for l in self.layers:
            self.dist.broadcast_(l.module.weight_mask)
            if getattr(l.module, "bias_mask", None) is not None:
                self.dist.broadcast_(l.module.bias_mask)
            l.zero_masked_()
            clear_masked_momentum(l, self.momentum_buffer)

    # rewinding ------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Copies of all parameters (by name), for rewinding; kept for checkpoints. While
        replaying, the snapshot the interrupted run took at this point."""
        i = len(self.snapshots)
        if self.replaying and i < len(self.replay.snapshots):
            snap = {k: v.to(self.device) for k, v in self.replay.snapshots[i].items()}
        else:
            snap = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        self.snapshots.append(snap)
        return snap

    def restore(self, state: dict) -> None:
        restore_parameters(self.model, self.layers, state)

    # losses -----------------------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def replica_outputs(self, x) -> torch.Tensor:
        """Outputs of the bare model with a leading replica axis; ``x``: ``(1, B, ...)``."""
        return self.model(self._prepare(x[0])).unsqueeze(0)

    def replica_losses(self, x, y, temperature: float = 1.0) -> torch.Tensor:
        out = self.replica_outputs(x)
        return self._loss(out / temperature if temperature != 1.0 else out, y)

    def _loss(self, out, y) -> torch.Tensor:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1), reduction="none",
                               label_smoothing=self.recipe.label_smoothing).view(y.shape).mean(-1)

    def scoring_batch(self, size: int | None = None):
        """The first ``size`` pool images in the order of epoch 0 of the run's seed: ``(1, size, ...)``."""
        size = min(size or self.batch_size, self.n)
        idx = torch.as_tensor(epoch_permutation(self.seeds[0], 0, self.n)[:size], device=self.device)
        return self.X[idx].unsqueeze(0), self.y[idx].unsqueeze(0)

    def lrs(self, epoch: int, epochs: int) -> torch.Tensor:
        """(1,) the learning rate at the first step of epoch ``epoch`` of a call of ``epochs``."""
        steps = self.steps_per_epoch
        return torch.tensor([self.lr_at(epoch * steps, epochs)], dtype=torch.float32, device=self.device)

    def lr_at(self, call_step: int, epochs: int) -> float:
        r, steps = self.recipe, self.steps_per_epoch
        scale = epochs / r.epochs  # a shorter call (fine-tuning) keeps the milestones' proportions
        return lr_at_step(call_step, epochs * steps, lr=r.lr, schedule=r.schedule,
                          warmup_steps=round(r.warmup_epochs * steps * min(1.0, scale)),
                          milestones=tuple(round(m * steps * scale) for m in r.milestones))

    @torch.no_grad()
    def evaluate(self, X, y, chunk: int = 256):
        """(accuracy, mean loss) ``(1,)`` of the bare model in eval mode on tensors ``X, y``."""
        was = self.model.training
        self.model.eval()
        try:
            correct, loss = 0.0, 0.0
            for s in range(0, len(X), chunk):
                out = self.model(self._prepare(X[s:s + chunk])).float()
                t = y[s:s + chunk].to(self.device)
                correct += float((out.argmax(-1) == t).sum())
                loss += float(F.cross_entropy(out, t, reduction="sum"))
            n = max(1, len(X))
            return torch.tensor([correct / n], device=self.device), torch.tensor([loss / n], device=self.device)
        finally:
            self.model.train(was)

    # training -----------------------------------------------------------------------------
    @property
    def halted(self) -> bool:
        return bool(self.diverged.all())

    def _seed_epoch(self, epoch: int) -> None:
        """Every epoch's randomness (augmentation, dropout, loader workers) from (seed, epoch, rank)."""
        s = (self.recipe.seed * 1_000_003 + epoch * 7_919 + self.dist.rank * 104_729) % 2 ** 31
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        gen = getattr(self.loader, "generator", None)
        if gen is not None:
            gen.manual_seed(s)

    def train(self, epochs: int | None = None, *, penalty=None, after_step=None, after_epoch=None,
              track_accuracy: bool = False) -> None:
        """Train ``epochs`` (default the recipe's) with a fresh LR schedule (see the module doc)."""
        import time
        epochs = self.epochs if epochs is None else epochs
        steps = self.steps_per_epoch
        call_step = 0
        with torch.no_grad():  # the fast path's invariant (Prunable.mask_by_gradient); every mask change keeps it
            for l in self.layers:
                if l.gradient_maskable:
                    l.zero_masked_()
                    clear_masked_momentum(l, self.momentum_buffer)
        for e in range(epochs):
            if self.halted:
                break
            g = self.epoch_counter
            if self.replay is not None and g < self.replay.epoch:
                for _ in range(steps):  # skipped: only the step callbacks run, the hooks are muted
                    self.step_counter += 1
                    call_step += 1
                    if after_step is not None:
                        after_step(self.step_counter)
                self.epoch_counter += 1
                if self.epoch_counter == self.replay.epoch:
                    self.replay.finish(self)
                continue
            self._wrap()
            self._seed_epoch(g)
            self.model.train()
            correct = torch.zeros((), dtype=torch.float64, device=self.device)
            loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
            seen = 0
            t0 = time.perf_counter()
            for s, (x, y) in enumerate(self.loader):
                if s >= steps:
                    break
                lr = self.lr_at(call_step, epochs)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                x, y = self._prepare(x), y.to(self.device, non_blocking=True)
                fast = [l for l in self.layers if l.gradient_maskable]   # the others: product, zeroed after
                slow = [l for l in self.layers if not l.gradient_maskable]
                for l in fast:
                    l.mask_by_gradient(True)
                try:
                    with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                        out = self.net(x)
                finally:
                    for l in fast:
                        l.mask_by_gradient(False)
                loss = F.cross_entropy(out.float(), y, label_smoothing=self.recipe.label_smoothing)
                total = loss
                if penalty is not None:
                    pen = penalty()
                    if pen is not None:
                        total = total + pen.sum()
                self.optimizer.zero_grad(set_to_none=True)
                (total if self.scaler is None else self.scaler.scale(total)).backward()
                for l in fast:
                    l.mask_grad_()
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                for l in slow:
                    l.zero_masked_()
                self.step_counter += 1
                call_step += 1
                self.last_batch = (x.unsqueeze(0), y.unsqueeze(0))
                with torch.no_grad():
                    loss_sum += loss.detach().double()
                    correct += (out.detach().argmax(-1) == y).sum().double()  # rows report it for every method
                seen += len(y)
                if after_step is not None:
                    after_step(self.step_counter)
                if self.kill_at_step is not None and self.step_counter >= self.kill_at_step:
                    import os
                    import signal
                    os.kill(os.getpid(), signal.SIGKILL)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            secs = time.perf_counter() - t0
            sums = self.dist.all_sum(torch.stack([correct, loss_sum,
                                                  torch.tensor(float(seen), dtype=torch.float64, device=self.device)]))
            images = float(sums[2])
            self.last_epoch = {"images": images, "seconds": secs, "images_per_s": images / max(secs, 1e-9),
                               "train_top1": float(sums[0]) / max(images, 1.0),
                               "train_loss": float(sums[1]) / (steps * self.dist.world)}
            self.epoch_counter += 1
            self._check_divergence()
            if after_epoch is not None:
                acc = torch.tensor([self.last_epoch["train_top1"]], device=self.device)
                after_epoch(e, epochs, acc, torch.tensor([self.last_epoch["train_loss"]], device=self.device))
            for cb in self.epoch_callbacks:
                cb()

    @torch.no_grad()
    def _check_divergence(self) -> None:
        ok = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        self.diverged |= not ok

    # state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything of the trainer a resume needs (the model's own state is saved beside it)."""
        cuda = [torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        return {"epoch_counter": self.epoch_counter, "step_counter": self.step_counter,
                "diverged": self.diverged.clone(), "optimizer": self.optimizer.state_dict(),
                "scaler": None if self.scaler is None else self.scaler.state_dict(),
                "snapshots": [{k: v.detach().cpu() for k, v in s.items()} for s in self.snapshots],
                "sampler_epoch": self.epoch_counter, "last_epoch": dict(self.last_epoch),
                "rng": {"torch": torch.get_rng_state(), "cuda": cuda, "numpy": np.random.get_state(),
                        "python": random.getstate()}}

    def load_state_dict(self, state: dict) -> None:
        self.epoch_counter, self.step_counter = state["epoch_counter"], state["step_counter"]
        self.diverged = state["diverged"].cpu().clone()
        self.reset_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.last_epoch = dict(state.get("last_epoch", {}))
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        for i, s in enumerate(rng["cuda"][: torch.cuda.device_count()] if torch.cuda.is_available() else []):
            torch.cuda.set_rng_state(s.cpu(), i)
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])


# -- resuming a procedure -----------------------------------------------------------------------
HOOKS = ("penalty", "after_step", "after_epoch", "after_prune", "after_update")
SCORES = ("scores", "drop_scores", "grow_scores")


def guard_method(method, ctx) -> None:
    """Mute ``method``'s training hooks and scores while ``ctx.trainer`` replays: hooks do nothing,
    scores are the current masks (cheap; whatever they choose is overwritten at the checkpoint)."""
    tr = ctx.trainer
    for name in HOOKS:
        real = getattr(method, name)
        object.__setattr__(method, name, lambda *a, _real=real, **k: None if tr.replaying else _real(*a, **k))
    for name in SCORES:
        real = getattr(method, name)
        object.__setattr__(method, name, lambda *a, _real=real, **k: (
            [l.mask.detach().clone() for l in ctx.layers] if tr.replaying else _real(*a, **k)))


def _holds_module(v) -> bool:
    if isinstance(v, nn.Module):
        return True
    return isinstance(v, (list, tuple)) and any(isinstance(x, nn.Module) for x in v)


def method_state(method) -> dict:
    """The method's own state (PILoT's schedule and alpha, FORCE's init, ...): its attributes but
    the config, the guards and the modules installed in the model (saved with the model)."""
    return {k: v for k, v in vars(method).items()
            if k != "config" and k not in HOOKS + SCORES and not _holds_module(v)}


def context_state(ctx) -> dict:
    return {"extra": ctx.extra, "round": ctx.round,
            "generators": {r: g.get_state() for r, g in ctx._generators.items()}}


@dataclass
class Replay:
    """A checkpoint being resumed: the trainer skips epochs before ``epoch`` and then loads
    ``state`` (model, trainer, method, context) via ``finish``."""

    epoch: int
    state: dict
    method: object
    ctx: object
    snapshots: list = field(default_factory=list)
    on_finish: Callable | None = None

    def finish(self, trainer: LoaderTrainer) -> None:
        s = self.state
        with torch.no_grad():
            trainer.model.load_state_dict(s["model"])
        trainer.load_state_dict(s["trainer"])
        for k, v in s["method"].items():
            object.__setattr__(self.method, k, v)
        cs = s["context"]
        self.ctx.extra, self.ctx.round = cs["extra"], cs["round"]
        for r, g in cs["generators"].items():
            self.ctx.generator(r).set_state(g.cpu())
        trainer.replay = None
        if self.on_finish is not None:
            self.on_finish()


__all__ = ["Dist", "init_dist", "lr_at_step", "Recipe", "LoaderTrainer", "guard_method", "method_state",
           "context_state", "Replay"]
