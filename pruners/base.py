"""The pruning framework: method registry, the strategy interface, and the pruning context.

How to add a method
-------------------
1. Write a config dataclass (frozen; every field with ``metadata={"help": ...}``) that subclasses
   the config of the *procedure* the method follows (below). Its fields become CLI flags of
   ``cubist prune`` and are recorded in every result row's ``params``.
2. Subclass :class:`Method`, set ``name``, ``Config`` and ``procedure``, and override the ONE
   extension point :meth:`Method.scores`: one tensor per prunable layer, shaped
   ``(R, *weight_shape)``, higher = keep. Decorate the class with :func:`register`::

       @register
       class Magnitude(Method):
           name = "mag"
           Config = AfterTrainingConfig
           procedure = "after_training"
           def scores(self, ctx):
               return [layer.weight().detach().abs() for layer in ctx.layers]

   Budgets, schedules, top-k, masks, biases, optimiser and training are shared; a method never
   applies a mask itself.
3. Optional training-time hooks (default no-ops), for methods that change how the network is
   trained (PILoT, spred, STR, DWF): :meth:`Method.setup` (install a reparametrisation with
   :meth:`pruners.layers.Prunable.set_reparam`), :meth:`Method.before_train` (right before each
   training run the procedure starts: every round of ``cycles``, the fine-tuning run),
   :meth:`Method.penalty` (added to the loss), :meth:`Method.after_step`,
   :meth:`Method.after_epoch` (per-replica train accuracy in ``stats``),
   :meth:`Method.after_prune` (adjust masks after a pruning event, keeping the counts) and
   :meth:`Method.finalize` (collapse the reparametrisation into the raw weight before the final
   prune to the target count). Methods of the ``dynamic`` procedure also give
   :meth:`Method.grow_scores` (and may override :meth:`Method.drop_scores`, default ``|w|``);
   :meth:`Method.after_update` sees every mask update (:class:`MaskUpdate`).
4. Put the class in a module ``pruners/methods*.py`` (e.g. ``pruners/methods_reparam.py``):
   :func:`load_methods` imports every such module, so the method appears in :data:`METHODS`,
   in ``cubist prune --method`` and in :func:`pruners.run_sweep`.

Procedures (``Method.procedure``; implemented once in :mod:`pruners.procedures`):

- ``"at_init"``: prune to the target at initialisation, in ``rounds`` rounds without training
  between them (1 = one shot: SNIP, GraSP, random; 100 exponential: SynFlow), then train.
- ``"cycles"``: train, prune a fraction of the survivors, rewind (weights to init or step k =
  IMP / lottery tickets, or only the LR schedule = LRR), repeat until the target (or exactly
  ``cycles`` geometric rounds); then train. All replicas of one context must need the same
  number of rounds (:func:`pruners.runner.plan_chunks` groups them by
  :meth:`MethodConfig.retrain_rounds`).
- ``"gradual"``: prune on the cubic schedule during one training run (GMP, Zhu & Gupta 2017).
- ``"after_training"``: train (with the method's hooks), finalize, prune to the target, then
  optionally fine-tune (PILoT, spred, STR, DWF).
- ``"dynamic"``: dynamic sparse training (RigL, Evci et al. 2020): prune to the target at
  initialisation by :meth:`Method.scores` (per-layer counts from the density scheme), then one
  training run in which every ``update_every`` optimiser steps, until ``end_fraction`` of the
  run, each layer drops a fraction of its active weights (lowest :meth:`Method.drop_scores`) and
  grows as many (highest :meth:`Method.grow_scores`); every count stays exact throughout.

What a procedure will do is known before it runs, from its config alone:
:meth:`MethodConfig.retrain_rounds` (rounds of training before the last training run),
:meth:`MethodConfig.total_epochs` and :meth:`MethodConfig.check_run_length`. The procedure
configs override them; a sweep asks them to plan (which runs share a batched model, progress,
errors before any training) and never reads a procedure's fields itself.

Replicas: every tensor a method sees has a leading replica axis ``R`` (an ensemble of spiral
MLPs trained at once, or ``R = 1`` for a plain module such as a CNN). Targets are per replica:
``ctx.targets[r]`` is the exact number of weight nonzeros replica ``r`` ends with. Methods must
treat replicas independently (no reductions across the replica axis) and draw randomness from
``ctx.generator(r)`` so that a batched run equals the same runs done one by one.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence

import numpy as np
import torch

from . import density, schedules
from .layers import Prunable, update_bias_masks
from .masking import topk_keep

if TYPE_CHECKING:  # pragma: no cover
    from .train import Trainer

SCOPES = ("global", "layer")
PRUNABLE = ("all", "hidden")
PROCEDURES = ("at_init", "cycles", "gradual", "after_training", "dynamic")


# -- configs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodConfig:
    """Options every method shares. Subclass it (via a procedure config) for a method's own."""

    scope: str = field(default="global", metadata={
        "help": "global: one top-k over all prunable layers; layer: per-layer counts from --density-scheme"})
    density_scheme: str = field(default="uniform", metadata={
        "help": "per-layer densities when scope=layer: " + " | ".join(density.SCHEMES)})
    prunable: str = field(default="all", metadata={
        "help": "all: every weight layer is pruned; hidden: the last layer stays dense (counted in the target)"})

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; choose from {', '.join(SCOPES)}")
        if self.density_scheme not in density.SCHEMES:
            raise ValueError(f"unknown density scheme {self.density_scheme!r}; choose from {', '.join(density.SCHEMES)}")
        if self.prunable not in PRUNABLE:
            raise ValueError(f"unknown prunable {self.prunable!r}; choose from {', '.join(PRUNABLE)}")

    def to_params(self) -> dict:
        return dataclasses.asdict(self)

    def pruned(self, layers: Sequence) -> list:
        """The items of ``layers`` (one per weight layer, input to output: the layers or their
        weight counts) that are pruned; the others stay dense."""
        return list(layers[:-1]) if self.prunable == "hidden" else list(layers)

    # what the procedure will do, from the config alone (overridden by the procedure configs)
    def retrain_rounds(self, layer_weights: Sequence[int], target: int) -> int:
        """Rounds of training and pruning before the last training run, for one replica whose
        weight layers hold ``layer_weights`` weights, pruned to ``target`` weight nonzeros.

        Replicas with the same count make the same sequence of training calls, so they can share
        one context (one batched model). 0: one training run.
        """
        return 0

    def total_epochs(self, epochs: int, layer_weights: Sequence[int], target: int) -> int:
        """Epochs one replica trains in all when each training run lasts ``epochs``."""
        return epochs * (self.retrain_rounds(layer_weights, target) + 1)

    def check_run_length(self, steps: int) -> None:
        """Raise ``ValueError`` if training runs of ``steps`` optimiser steps cannot carry out the
        procedure (checked before any training)."""


@dataclass(frozen=True)
class AtInitConfig(MethodConfig):
    """Prune at initialisation (``rounds`` rounds, exponential targets), then train."""

    rounds: int = field(default=1, metadata={"help": "pruning rounds at init (exponential schedule)"})

    def __post_init__(self):
        super().__post_init__()
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")


@dataclass(frozen=True)
class CyclesConfig(MethodConfig):
    """Train-prune-rewind cycles until the target, then a last training run."""

    rate: float = field(default=0.2, metadata={"help": "fraction of the surviving weights pruned per round"})
    rewind: str = field(default="init", metadata={
        "help": "after each prune: init (weights to init, LTH) | step (weights to step --rewind-step, WR) | "
                "lr (keep weights and momentum, restart only the LR schedule, LRR)"})
    rewind_step: int = field(default=0, metadata={"help": "optimiser step k for rewind=step"})
    cycles: int = field(default=0, metadata={
        "help": "0: as many rounds of --rate as needed; K > 0: exactly K rounds with geometric targets "
                "N (F/N)^(k/K) (the sparsest paper's imp_LTH: 5)"})

    def __post_init__(self):
        super().__post_init__()
        if self.cycles < 0:
            raise ValueError(f"cycles must be >= 0, got {self.cycles}")
        if not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), got {self.rate}")
        if self.rewind not in ("init", "step", "lr"):
            raise ValueError(f"unknown rewind {self.rewind!r}; choose init, step or lr")
        if self.rewind_step < 0:
            raise ValueError(f"rewind_step must be >= 0, got {self.rewind_step}")

    def retrain_rounds(self, layer_weights: Sequence[int], target: int) -> int:
        """``cycles``, or the rounds of ``rate`` needed from the prunable weights to the budget."""
        if self.cycles:
            return self.cycles
        n = sum(self.pruned(layer_weights))
        fixed = sum(layer_weights) - n
        return schedules.geometric_rounds(n, target - fixed, self.rate)

    def check_run_length(self, steps: int) -> None:
        if self.rewind == "step" and self.rewind_step > steps:
            raise ValueError(f"rewind_step {self.rewind_step} lies beyond the first training run ({steps} steps)")


@dataclass(frozen=True)
class GradualConfig(MethodConfig):
    """Prune during one training run, ``n_t = F + (N - F)(1 - t/T)^3`` (Zhu & Gupta 2017)."""

    prune_steps: int = field(default=200, metadata={"help": "number of pruning events T"})
    start_frac: float = field(default=0.0, metadata={
        "help": "fraction of training before the first pruning event (uncertain in the paper)"})
    end_frac: float = field(default=0.6, metadata={
        "help": "fraction of training at the last pruning event (uncertain; the rest fine-tunes)"})

    def __post_init__(self):
        super().__post_init__()
        if self.prune_steps < 1:
            raise ValueError(f"prune_steps must be >= 1, got {self.prune_steps}")
        if not 0 <= self.start_frac < self.end_frac <= 1:
            raise ValueError(f"need 0 <= start_frac < end_frac <= 1, got {self.start_frac}, {self.end_frac}")


@dataclass(frozen=True)
class AfterTrainingConfig(MethodConfig):
    """Train (with the method's hooks), prune to the target, optionally fine-tune."""

    finetune_epochs: int = field(default=0, metadata={"help": "epochs of fine-tuning after the final prune"})

    def __post_init__(self):
        super().__post_init__()
        if self.finetune_epochs < 0:
            raise ValueError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")

    def total_epochs(self, epochs: int, layer_weights: Sequence[int], target: int) -> int:
        """The training run, then ``finetune_epochs`` of fine-tuning."""
        return super().total_epochs(epochs, layer_weights, target) + self.finetune_epochs


@dataclass(frozen=True)
class DynamicConfig(MethodConfig):
    """Dynamic sparse training: one run from a mask of exactly the target, whose layers trade
    weights every ``update_every`` optimiser steps until ``end_fraction`` of the run (RigL).

    At an update after ``t`` steps of the run each layer drops ``floor(a_t n)`` of its ``n``
    active weights and grows as many, ``a_t`` = :meth:`drop_fraction_at` (RigL's cosine decay;
    a method with another anneal overrides it). :meth:`update_steps` are the steps at which
    updates happen: the multiples of ``update_every`` below ``T_end`` = :meth:`end_step`.
    """

    scope: str = field(default="layer", metadata={
        "help": "layer: the initial mask's per-layer counts from --density-scheme (kept by every update); "
                "global: one top-k over all layers for the initial mask"})
    density_scheme: str = field(default="erk", metadata={
        "help": "per-layer densities of the initial mask: " + " | ".join(density.SCHEMES)})
    update_every: int = field(default=100, metadata={"help": "optimiser steps between mask updates (Delta T)"})
    drop_fraction: float = field(default=0.3, metadata={
        "help": "alpha: an update after t steps drops alpha (1 + cos(pi t / T_end)) / 2 of each layer's "
                "active weights (and grows as many)"})
    end_fraction: float = field(default=0.75, metadata={
        "help": "fraction of the run's optimiser steps at T_end: no mask update from then on"})

    def __post_init__(self):
        super().__post_init__()
        if self.update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {self.update_every}")
        if not 0 < self.drop_fraction <= 1:
            raise ValueError(f"drop_fraction must be in (0, 1], got {self.drop_fraction}")
        if not 0 < self.end_fraction <= 1:
            raise ValueError(f"end_fraction must be in (0, 1], got {self.end_fraction}")

    def end_step(self, total_steps: int) -> int:
        """``T_end = floor(end_fraction * total_steps)`` for a run of ``total_steps`` steps."""
        return math.floor(self.end_fraction * total_steps + 1e-9)

    def update_steps(self, total_steps: int) -> list[int]:
        """Steps done in the run (1-based counts) after which the masks are updated."""
        return list(range(self.update_every, self.end_step(total_steps), self.update_every))

    def drop_fraction_at(self, step: int, total_steps: int) -> float:
        """``a_t = drop_fraction * (1 + cos(pi t / T_end)) / 2`` (RigL's cosine decay)."""
        return self.drop_fraction * (1 + math.cos(math.pi * step / self.end_step(total_steps))) / 2

    def check_run_length(self, steps: int) -> None:
        if not self.update_steps(steps):
            raise ValueError(f"update_every {self.update_every} leaves no mask update before T_end = "
                             f"{self.end_step(steps)} (end_fraction {self.end_fraction} of {steps} steps)")


PROCEDURE_CONFIGS = {"at_init": AtInitConfig, "cycles": CyclesConfig, "gradual": GradualConfig,
                     "after_training": AfterTrainingConfig, "dynamic": DynamicConfig}


# -- the strategy ----------------------------------------------------------------------------
@dataclass
class EpochStats:
    """What :meth:`Method.after_epoch` is told: per-replica tensors ``(R,)``."""

    epoch: int                 # 0-based epoch within the current training call
    epochs: int                # length of the current training call
    train_acc: torch.Tensor    # running accuracy over the epoch's batches (``track_accuracy``)
    loss: torch.Tensor         # mean training loss over the epoch's batches


@dataclass
class MaskUpdate:
    """What :meth:`Method.after_update` is told about one mask update of the ``dynamic``
    procedure. Masks are boolean, one per prunable layer, ``(R, *shape)``."""

    step: int                   # optimiser steps of the run done before the update (t)
    end_step: int               # T_end: no update at or after it
    fraction: float             # a_t, the drop fraction at this step
    counts: torch.Tensor        # (R, L) int64: weights dropped = weights grown, per layer
    dropped: list[torch.Tensor]  # active weights dropped (some may be grown back: see ``new``)
    grown: list[torch.Tensor]   # weights grown: inactive before the update, or just dropped
    new: list[torch.Tensor]     # grown weights inactive before the update: they start at 0, momentum 0


class Method:
    """A pruning strategy. Override :meth:`scores`; everything else has shared defaults.

    The procedures call the optional hooks as follows: :meth:`setup` once; for every training
    run :meth:`before_train` once, then :meth:`penalty` and :meth:`after_step` at every step and
    :meth:`after_epoch` after every epoch; :meth:`after_prune` after every pruning event;
    :meth:`finalize` before the final prune (``after_training``); :meth:`grow_scores` and
    :meth:`drop_scores` at every mask update (``dynamic``), :meth:`after_update` after it.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = AtInitConfig
    procedure: ClassVar[str] = "at_init"
    #: ask the trainer for per-replica running train accuracy in :class:`EpochStats`
    track_accuracy: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{self.name} expects a {self.Config.__name__}, got {type(self.config).__name__}")

    def __repr__(self):
        return f"{type(self).__name__}({self.config})"

    def params(self) -> dict:
        """The hyper-parameters recorded in each result row (``params``)."""
        return {"method": self.name, "procedure": self.procedure, **self.config.to_params()}

    # the extension point
    def scores(self, ctx: "PruneContext") -> list[torch.Tensor]:
        """One score tensor per layer of ``ctx.layers``, ``(R, *weight_shape)``; higher = keep.

        Scores of already-masked weights are ignored (pruned stays pruned); NaN counts as
        lowest. Called whenever the procedure prunes.
        """
        raise NotImplementedError

    # optional hooks
    def setup(self, ctx: "PruneContext") -> None:
        """Before the first training call (after the initial state is saved)."""

    def before_train(self, ctx: "PruneContext") -> None:
        """Right before each training run begins (after :meth:`setup` for the first; after the
        prune and rewind of a round; before fine-tuning). Not called when the trainer has stopped
        for good (a plain module whose run diverged takes no more steps)."""

    def penalty(self, ctx: "PruneContext") -> torch.Tensor | None:
        """A regulariser added to the loss at every step: a scalar, or ``(R,)`` summed over replicas."""
        return None

    def after_step(self, ctx: "PruneContext") -> None:
        """After every optimiser step (masks are already re-applied)."""

    def after_epoch(self, ctx: "PruneContext", stats: EpochStats) -> None:
        """After every epoch of every training call."""

    def after_prune(self, ctx: "PruneContext") -> None:
        """After every pruning event (e.g. random pruning's flow repair via ``ctx.set_masks``)."""

    def finalize(self, ctx: "PruneContext") -> None:
        """Before the final prune to the target (collapse reparametrisations here)."""

    # the dynamic procedure's scores and hook
    def drop_scores(self, ctx: "PruneContext") -> list[torch.Tensor]:
        """At a mask update: one tensor per layer, ``(R, *weight_shape)``, higher = keep; the
        lowest of the active weights are dropped. Default: ``|w|`` (RigL, SET)."""
        return [l.weight().detach().abs() for l in ctx.layers]

    def grow_scores(self, ctx: "PruneContext") -> list[torch.Tensor]:
        """At a mask update: one tensor per layer, ``(R, *weight_shape)``, higher = grow first
        (among the weights that are not kept). Called before :meth:`drop_scores`, before any
        mask or weight changes."""
        raise NotImplementedError(f"{type(self).__name__} follows the dynamic procedure but has no grow_scores")

    def after_update(self, ctx: "PruneContext", update: MaskUpdate) -> None:
        """After every mask update of the ``dynamic`` procedure (new weights already at 0)."""


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a :class:`Method` subclass to :data:`METHODS` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method {cls.name!r} is already registered by {METHODS[cls.name].__name__}")
    if cls.procedure not in PROCEDURES:
        raise ValueError(f"{cls.__name__}: unknown procedure {cls.procedure!r}; choose from {', '.join(PROCEDURES)}")
    if not issubclass(cls.Config, PROCEDURE_CONFIGS[cls.procedure]):
        raise ValueError(f"{cls.__name__}.Config must subclass {PROCEDURE_CONFIGS[cls.procedure].__name__}")
    METHODS[cls.name] = cls
    return cls


_loaded = False


def load_methods() -> dict[str, type[Method]]:
    """Import every ``pruners.methods*`` module (registering their methods); returns :data:`METHODS`."""
    global _loaded
    if not _loaded:
        _loaded = True
        for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
            if info.name.startswith("methods"):
                importlib.import_module(f"{__package__}.{info.name}")
    return METHODS


def get_method(name: str) -> type[Method]:
    """The registered :class:`Method` subclass called ``name`` (after :func:`load_methods`)."""
    load_methods()
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]


# -- the context -----------------------------------------------------------------------------
class PruneContext:
    """Everything a method may look at or ask for, for ``R`` replicas pruned together.

    ``layers``: the prunable layers (:class:`~pruners.layers.Prunable`; views are ``(R, ...)``);
    ``all_layers``: every maskable layer (``layers`` minus the dense ones when
    ``prunable="hidden"``); ``targets``: ``(R,)`` int64, the exact final weight nonzeros;
    ``trainer``: the :class:`~pruners.train.Trainer` (data, optimiser, training calls).
    """

    def __init__(self, model, trainer: "Trainer", all_layers: list[Prunable], targets, config: MethodConfig,
                 *, seeds, method_name: str = "", input_shape=None):
        self.model = model
        self.trainer = trainer
        self.all_layers = all_layers
        self.config = config
        self.layers = config.pruned(all_layers)
        if not self.layers:
            raise ValueError("no prunable layers")
        self.R = all_layers[0].R
        self.device = all_layers[0].mask.device
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.int64)).reshape(-1)
        if len(self.targets) != self.R:
            raise ValueError(f"{len(self.targets)} targets for {self.R} replicas")
        self.seeds = [int(s) for s in seeds]
        self.method_name = method_name
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.extra: list[dict] = [{} for _ in range(self.R)]
        self.round = 0  # index of the current pruning round / event, set by the procedures
        self._generators: dict[int, torch.Generator] = {}
        fixed = self.fixed_nnz()
        total = self.prunable_numel()
        if bool(((self.targets - fixed) < 1).any()) or bool(((self.targets - fixed) > total).any()):
            raise ValueError(f"targets must lie in [{int(fixed.max()) + 1}, {int(fixed.min()) + total}] "
                             f"(dense layers hold {int(fixed.max())} weights, prunable layers {total})")

    # counts ----------------------------------------------------------------------------
    def prunable_numel(self) -> int:
        """N: weights per replica in the prunable layers."""
        return sum(l.numel for l in self.layers)

    def fixed_nnz(self) -> torch.Tensor:
        """(R,) weight nonzeros of the layers that are not pruned."""
        fixed = [l for l in self.all_layers if all(l is not p for p in self.layers)]
        out = torch.zeros(self.R, dtype=torch.int64)
        for l in fixed:
            out += (l.mask != 0).reshape(self.R, -1).sum(1).cpu()
        return out

    def budgets(self) -> torch.Tensor:
        """(R,) final nonzeros of the prunable layers: ``targets - fixed_nnz``."""
        return self.targets - self.fixed_nnz()

    def nnz(self) -> torch.Tensor:
        """(R,) current weight nonzeros of the prunable layers."""
        return sum((l.mask != 0).reshape(self.R, -1).sum(1).cpu() for l in self.layers)

    def weight_nnz(self) -> torch.Tensor:
        """(R,) current weight nonzeros of all layers."""
        return sum((l.mask != 0).reshape(self.R, -1).sum(1).cpu() for l in self.all_layers)

    # data and randomness ---------------------------------------------------------------
    def generator(self, r: int) -> torch.Generator:
        """Replica ``r``'s CPU generator for the method's randomness (seeded by seed and method)."""
        if r not in self._generators:
            h = sum(ord(c) * 31 ** i for i, c in enumerate(self.method_name)) % (2 ** 31)
            self._generators[r] = torch.Generator().manual_seed((int(self.seeds[r]) * 1_000_003 + h) % 2 ** 63)
        return self._generators[r]

    def batch(self, size: int | None = None):
        """A scoring batch per replica: the first ``size`` points of its epoch-0 data order.

        Returns ``(x, y)`` with a leading replica axis (plain modules: ``R = 1`` squeezed away by
        :meth:`loss`). ``size=None``: the trainer's batch size.
        """
        return self.trainer.scoring_batch(size)

    def loss(self, x, y, temperature: float = 1.0) -> torch.Tensor:
        """(R,) per-replica mean loss of the current model (outputs / ``temperature``) on
        per-replica batches; sum it before ``backward`` (replicas do not interact)."""
        return self.trainer.replica_losses(x, y, temperature)

    def step_batch(self):
        """The batch of the trainer's last optimiser step, ``(x, y)`` with a leading replica axis
        (as :meth:`batch`)."""
        if self.trainer.last_batch is None:
            raise ValueError("no optimiser step has been taken yet")
        return self.trainer.last_batch

    def dense_gradients(self, x, y) -> list[torch.Tensor]:
        """Per prunable layer, ``(R, *shape)``: the gradient of each replica's mean loss on
        ``(x, y)`` with respect to every weight, masked ones included, as if the network were
        dense (its masked weights are 0). Masks and buffers (e.g. BatchNorm statistics) are
        left as they were; raw weights only (no reparametrisation)."""
        if any(l.reparam is not None for l in self.layers):
            raise ValueError("dense gradients need raw weights (a reparametrisation is installed)")
        saved = [b.detach().clone() for b in self.model.buffers()]
        try:
            with torch.no_grad():
                for l in self.layers:
                    l.zero_masked_()  # masked weights are 0, so the dense forward is the masked one
                    l.mask.fill_(1)
            with torch.enable_grad():
                params = [l.param for l in self.layers]
                grads = torch.autograd.grad(self.loss(x, y).sum(), params, allow_unused=True)
        finally:
            with torch.no_grad():
                for b, s in zip(self.model.buffers(), saved):
                    b.copy_(s)
        return [torch.zeros(l.mask.shape, device=self.device) if g is None else l.rview(g.detach())
                for l, g in zip(self.layers, grads)]

    def input_ones(self) -> torch.Tensor:
        """An all-ones input, one example per replica: ``(R, 1, *input_shape)``."""
        shape = self.input_shape or tuple(self.trainer.X.shape[1:])
        return torch.ones(self.R, 1, *shape, device=self.device)

    def record(self, key: str, values) -> None:
        """Store a per-replica value (sequence of length R, or a scalar for all) in the rows' metrics."""
        if not isinstance(values, (list, tuple, np.ndarray, torch.Tensor)):
            values = [values] * self.R
        for r, v in enumerate(values):
            self.extra[r][key] = v.item() if hasattr(v, "item") else v

    # pruning ---------------------------------------------------------------------------
    @torch.no_grad()
    def prune_to(self, counts, scores: list[torch.Tensor]) -> None:
        """Keep exactly ``counts[r]`` weights of the prunable layers in replica ``r``.

        Only weights that survive so far can be kept. With ``scope="global"`` one top-k runs
        over all prunable layers; with ``scope="layer"`` the density scheme splits each count
        over the layers (capped by what survives in each). Afterwards the bias rule is applied,
        masked weights are zeroed and the optimiser's state for them is cleared.
        """
        counts = torch.as_tensor(np.asarray(counts, dtype=np.int64)).reshape(-1)
        if len(scores) != len(self.layers):
            raise ValueError(f"{len(scores)} score tensors for {len(self.layers)} layers")
        current = [(l.mask != 0).reshape(self.R, -1) for l in self.layers]
        flat = [s.detach().reshape(self.R, -1).to(device=self.device, dtype=torch.float32) for s in scores]
        nnz = torch.stack([c.sum(1).cpu() for c in current], 1)  # (R, L)
        if bool((counts > nnz.sum(1)).any()):
            raise ValueError("cannot keep more weights than survive")
        if self.config.scope == "global":
            keep = topk_keep(torch.cat(flat, 1), torch.cat(current, 1), counts.to(self.device))
            keeps = torch.split(keep, [c.shape[1] for c in current], dim=1)
        else:
            shapes = [l.shape for l in self.layers]
            per_layer = density.layer_counts(self.config.density_scheme, shapes, counts.numpy(), caps=nnz.numpy())
            per_layer = torch.as_tensor(per_layer)
            keeps = [topk_keep(f, c, per_layer[:, i].to(self.device)) for i, (f, c) in enumerate(zip(flat, current))]
        self.set_masks([k.reshape(l.mask.shape) for k, l in zip(keeps, self.layers)])

    @torch.no_grad()
    def set_masks(self, masks: list[torch.Tensor]) -> None:
        """Install boolean masks ``(R, *shape)`` on the prunable layers (no budget check)."""
        for l, m in zip(self.layers, masks):
            l.mask.copy_(m.to(l.mask.dtype))
        update_bias_masks(self.all_layers)
        for l in self.all_layers:
            l.zero_masked_()
        self.trainer.masks_changed()


MethodFactory = Callable[[MethodConfig], Method]
