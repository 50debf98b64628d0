"""Pruning methods audited against the sparsest Cubist Spiral MLPs (Zhang & Papyan, ICML 2024).

Layout, top to bottom:

- :mod:`pruners.layers`: prunable layers with a leading replica axis (:class:`BatchedMLP`, an
  ensemble of R spiral MLPs as one module) and masking of plain modules (Linear / Conv2d);
- :mod:`pruners.masking`, :mod:`pruners.density`, :mod:`pruners.schedules`: exact top-k that
  respects the current mask, per-layer density schemes, pruning schedules;
- :mod:`pruners.optim`, :mod:`pruners.train`: per-replica SGD and the paper's training protocol;
- :mod:`pruners.base`: the registry (:data:`METHODS`, :func:`register`, :func:`load_methods`),
  the strategy :class:`Method` whose one extension point is :meth:`Method.scores`, and
  :class:`PruneContext`;
- :mod:`pruners.procedures`: at_init / cycles / gradual / after_training / dynamic, shared by all methods;
- ``pruners/methods*.py``: the methods (imp, lrr, gmp, random, snip, grasp, synflow here;
  reparametrised ones in their own modules), loaded by :func:`load_methods`;
- :mod:`pruners.runner`: the batched spiral sweep (:func:`run_sweep`), :mod:`pruners.cli`:
  ``cubist prune``.

Adding a method: see the docstring of :mod:`pruners.base` (subclass :class:`Method` with a
config dataclass, override ``scores``, decorate with :func:`register`, put it in
``pruners/methods_<name>.py``).
"""
from __future__ import annotations

from .base import (METHODS, AfterTrainingConfig, AtInitConfig, CyclesConfig, DynamicConfig, EpochStats, GradualConfig,
                   MaskUpdate, Method, MethodConfig, PruneContext, get_method, load_methods, register)
from .layers import BatchedLinear, BatchedMLP, Prunable, attach_masks, prunable_layers
from .masking import mask_overlap, sparsity_report
from .runner import SweepConfig, rerun, run_sweep  # the library entry points


__all__ = ["METHODS", "Method", "MethodConfig", "AtInitConfig", "CyclesConfig", "GradualConfig",
           "AfterTrainingConfig", "DynamicConfig", "EpochStats", "MaskUpdate", "PruneContext", "register", "get_method",
           "load_methods",
           "BatchedLinear", "BatchedMLP", "Prunable", "attach_masks", "prunable_layers", "SweepConfig", "run_sweep",
           "rerun", "sparsity_report", "mask_overlap"]
