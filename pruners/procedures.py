"""The five pruning procedures, shared by all methods (see :mod:`pruners.base`).

- ``at_init``: SNIP (Lee et al. 2019), GraSP (Wang et al. 2020), random pruning (Gadhikar,
  Mukherjee & Burkholz 2023) in one round; SynFlow (Tanaka et al. 2020) in 100 exponential
  rounds; then the paper's training run.
- ``cycles``: IMP with rewinding to init (lottery tickets, Frankle & Carbin 2019) or to step k
  (weight rewinding, Frankle et al. 2020): the optimiser is reset and the LR schedule restarts
  each round; LRR (Renda et al. 2020): weights and momentum kept, only the LR schedule restarts.
  After the last prune (to exactly F) the network is trained once more. ``cycles = K > 0``
  replaces the fixed rate by exactly K rounds with geometric targets (the sparsest paper's
  imp_LTH: 5 rounds, rewinding to init).
  Documented simplification for rewinding to step k: after rewinding, training restarts the
  full LR schedule (not the remaining steps of the original one).
- ``gradual``: GMP (Zhu & Gupta 2017): ``T`` pruning events on the cubic schedule during one
  training run, evenly spaced between ``start_frac`` and ``end_frac`` of the optimiser steps.
- ``after_training``: train (with the method's hooks), finalize, prune once to F, fine-tune
  for ``finetune_epochs`` (0 = none).
- ``dynamic``: dynamic sparse training (RigL: Evci, Gale, Menick, Castro & Elsen, ICML 2020):
  prune once to F at initialisation (:meth:`Method.scores`, per-layer counts from the density
  scheme when ``scope="layer"``), then one training run; after ``t`` steps of it, for every ``t``
  of :meth:`DynamicConfig.update_steps`, :func:`update_masks` makes every layer of every replica
  drop ``k = floor(a_t n)`` of its ``n`` active weights and grow ``k``: the counts per layer,
  and so F, never change. Documented difference from RigL's Algorithm 1: the optimiser step of
  an update's batch is taken too (RigL skips it), and the update's gradient is taken after it.

Every procedure ends with exactly ``ctx.targets[r]`` weight nonzeros in replica ``r``. Every
training run goes through :func:`_train`, which calls :meth:`Method.before_train` first.
"""
from __future__ import annotations

import torch

from .base import EpochStats, MaskUpdate, Method, PruneContext
from .masking import topk_keep
from . import schedules


def _train(method: Method, ctx: PruneContext, epochs: int | None = None, after_step=None) -> None:
    hooked_step = type(method).after_step is not Method.after_step

    def step(k):
        if after_step is not None:
            after_step(k)
        if hooked_step:
            method.after_step(ctx)

    def epoch(e, epochs_, acc, loss):
        method.after_epoch(ctx, EpochStats(e, epochs_, acc, loss))

    if not ctx.trainer.halted:
        method.before_train(ctx)
    has_penalty = type(method).penalty is not Method.penalty
    ctx.trainer.train(epochs, penalty=(lambda: method.penalty(ctx)) if has_penalty else None,
                      after_step=step if (after_step is not None or hooked_step) else None,
                      after_epoch=epoch, track_accuracy=method.track_accuracy)


def _prune(method: Method, ctx: PruneContext, counts) -> None:
    ctx.prune_to(counts, method.scores(ctx))
    method.after_prune(ctx)


def _check(ctx: PruneContext) -> None:
    got, want = ctx.weight_nnz(), ctx.targets
    if not bool((got == want).all()):
        raise AssertionError(f"budget missed: weight nnz {got.tolist()} != targets {want.tolist()}")


def _begin(method: Method, ctx: PruneContext):
    """The start every procedure shares: the method's setup hook, then (config, trainer, prunable
    weights N, per-replica budgets F)."""
    method.setup(ctx)
    return method.config, ctx.trainer, ctx.prunable_numel(), ctx.budgets().numpy()


def prune_at_init(method: Method, ctx: PruneContext) -> None:
    cfg, _, N, F = _begin(method, ctx)
    counts = schedules.exponential(N, F, cfg.rounds) if cfg.rounds > 1 else schedules.one_shot(N, F)
    for k, c in enumerate(counts):
        ctx.round = k
        _prune(method, ctx, c)
    _check(ctx)
    _train(method, ctx)
    ctx.record("prune_events", len(counts))


def prune_in_cycles(method: Method, ctx: PruneContext) -> None:
    cfg, tr, N, F = _begin(method, ctx)
    counts = schedules.exponential(N, F, cfg.cycles) if cfg.cycles else schedules.geometric(N, F, cfg.rate)
    rewind_state = tr.snapshot() if cfg.rewind == "init" or (cfg.rewind == "step" and cfg.rewind_step == 0) else None
    start = tr.step_counter

    def capture(step):
        nonlocal rewind_state
        if rewind_state is None and step - start == cfg.rewind_step:
            rewind_state = tr.snapshot()

    for k, c in enumerate(counts):
        ctx.round = k
        _train(method, ctx, after_step=capture if (cfg.rewind == "step" and rewind_state is None) else None)
        _prune(method, ctx, c)
        if cfg.rewind in ("init", "step"):
            if rewind_state is None:
                raise ValueError(f"rewind_step {cfg.rewind_step} lies beyond the first training run "
                                 f"({tr.step_counter - start} steps)")
            tr.restore(rewind_state)
            tr.reset_optimizer()
    _check(ctx)
    _train(method, ctx)
    ctx.record("rounds", len(counts))


def prune_gradually(method: Method, ctx: PruneContext) -> None:
    cfg, tr, N, F = _begin(method, ctx)
    total = tr.epochs * tr.steps_per_epoch
    counts = schedules.cubic(N, F, cfg.prune_steps)
    at = {}
    for i, s in enumerate(schedules.event_steps(total, cfg.prune_steps, cfg.start_frac, cfg.end_frac)):
        at[int(s)] = i  # coinciding events: the later (smaller) count wins
    start = tr.step_counter
    done = []

    def step(k):
        i = at.get(k - start)
        if i is not None:
            _prune(method, ctx, counts[i])
            done.append(i)

    _train(method, ctx, after_step=step)
    if not done or done[-1] != len(counts) - 1:  # training stopped early (plain run diverged)
        _prune(method, ctx, counts[-1])
    _check(ctx)
    ctx.record("prune_events", len(set(at.values())))


def prune_after_training(method: Method, ctx: PruneContext) -> None:
    cfg, tr, _, F = _begin(method, ctx)
    _train(method, ctx)
    method.finalize(ctx)
    _prune(method, ctx, F)
    _check(ctx)
    if cfg.finetune_epochs:
        tr.reset_optimizer()
        _train(method, ctx, cfg.finetune_epochs)


@torch.no_grad()
def update_masks(method: Method, ctx: PruneContext, step: int, end_step: int, fraction: float) -> MaskUpdate:
    """One mask update of the ``dynamic`` procedure at drop fraction ``fraction`` (``a_t``).

    Per replica and layer with ``n`` active weights, ``k = floor(fraction * n)``: the active
    weights are ranked by :meth:`Method.drop_scores` and the ``n - k`` highest kept (ties: the
    lower index in the layer's flattened weight is kept, so the higher one is dropped); then the
    ``k`` highest :meth:`Method.grow_scores` among the weights not kept (the inactive ones and
    the ``k`` just dropped, as RigL's Algorithm 1 and code) are grown (ties: the lower index).
    Grown weights that were inactive start at 0 with zero momentum; a dropped weight grown back
    keeps its value and momentum (RigL's code: it is no new connection). Grow scores are asked
    first, before anything changes.
    """
    grow = method.grow_scores(ctx)
    drop = method.drop_scores(ctx)
    if len(grow) != len(ctx.layers) or len(drop) != len(ctx.layers):
        raise ValueError(f"{len(drop)} drop and {len(grow)} grow score tensors for {len(ctx.layers)} layers")
    R = ctx.R
    masks, dropped, grown, new, counts = [], [], [], [], []
    for l, d, g in zip(ctx.layers, drop, grow):
        active = (l.mask != 0).reshape(R, -1)
        n = active.sum(1)
        k = torch.floor(fraction * n.double()).long()
        keep = topk_keep(d.detach().reshape(R, -1).to(ctx.device, torch.float32), active, n - k)
        add = topk_keep(g.detach().reshape(R, -1).to(ctx.device, torch.float32), ~keep, k)
        shape = l.mask.shape
        masks.append((keep | add).reshape(shape))
        dropped.append((active & ~keep).reshape(shape))
        grown.append(add.reshape(shape))
        new.append((add & ~active).reshape(shape))
        counts.append(k.cpu())
    ctx.set_masks(masks)
    tr = ctx.trainer
    for l, fresh in zip(ctx.layers, new):
        l.rview(l.param)[fresh] = 0
        buf = tr.momentum_buffer(l.param)
        if buf is not None:
            l.rview(buf)[fresh] = 0
    return MaskUpdate(step, end_step, fraction, torch.stack(counts, 1), dropped, grown, new)


def prune_dynamically(method: Method, ctx: PruneContext) -> None:
    cfg, tr, _, F = _begin(method, ctx)
    ctx.round = 0
    _prune(method, ctx, F)
    _check(ctx)
    total = tr.epochs * tr.steps_per_epoch
    end = cfg.end_step(total)
    at = set(cfg.update_steps(total))
    start = tr.step_counter
    grown = torch.zeros(ctx.R, dtype=torch.int64)

    def step(k):
        t = k - start
        if t in at:
            ctx.round += 1
            update = update_masks(method, ctx, t, end, cfg.drop_fraction_at(t, total))
            grown.add_(torch.stack([n.reshape(ctx.R, -1).sum(1).cpu() for n in update.new]).sum(0))
            method.after_update(ctx, update)

    _train(method, ctx, after_step=step)
    _check(ctx)
    ctx.record("mask_updates", ctx.round)
    ctx.record("weights_grown", grown.tolist())


PROCEDURE_FUNCS = {"at_init": prune_at_init, "cycles": prune_in_cycles, "gradual": prune_gradually,
                   "after_training": prune_after_training, "dynamic": prune_dynamically}


def run_method(method: Method, ctx: PruneContext) -> None:
    """Run ``method``'s procedure on ``ctx``: afterwards every replica has exactly its target."""
    PROCEDURE_FUNCS[method.procedure](method, ctx)
