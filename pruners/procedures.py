"""The four pruning procedures, shared by all methods (see :mod:`pruners.base`).

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

Every procedure ends with exactly ``ctx.targets[r]`` weight nonzeros in replica ``r``. Every
training run goes through :func:`_train`, which calls :meth:`Method.before_train` first.
"""
from __future__ import annotations

from .base import EpochStats, Method, PruneContext
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


PROCEDURE_FUNCS = {"at_init": prune_at_init, "cycles": prune_in_cycles, "gradual": prune_gradually,
                   "after_training": prune_after_training}


def run_method(method: Method, ctx: PruneContext) -> None:
    """Run ``method``'s procedure on ``ctx``: afterwards every replica has exactly its target."""
    PROCEDURE_FUNCS[method.procedure](method, ctx)
