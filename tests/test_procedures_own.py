"""Procedures own their details (issue 10, item 6).

The sweep asks the method's config what its procedure will do (:meth:`MethodConfig.retrain_rounds`,
:meth:`MethodConfig.total_epochs`, :meth:`MethodConfig.check_run_length`) instead of reading
procedure fields; :meth:`Method.before_train` runs right before every training run; PILoT starts
each training call there (it used to detect it in ``penalty``) and its rows did not change.
"""
import json
import math

import pytest
import torch

from cubist.model import init_weights
from cubist.train import TrainConfig
from pruners import (METHODS, AfterTrainingConfig, AtInitConfig, CyclesConfig, GradualConfig, Method, PruneContext,
                     get_method, load_methods, register)
from pruners import schedules
from pruners.layers import BatchedMLP, plain_mlp, prunable_layers
from pruners.procedures import run_method
from pruners.runner import SweepConfig, build_runs, check_feasible, epochs_per_run, load_data, plan_chunks, run_sweep
from pruners.train import Trainer
from pruner_helpers import spiral_subset

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTHS = (2, 8, 8, 1)          # 16 + 64 + 8 = 88 weights
NNZ = (12, 20, 35, 60)


def sweep(method, params, **kw):
    base = dict(method=method, method_params=params, widths=WIDTHS, nnz=NNZ, lrs=(0.1,), schedules=("cosine",),
                seeds=2, epochs=1, subsample=64, device="cpu")
    return SweepConfig(**{**base, **kw})


def old_rounds(cfg: SweepConfig, target: int) -> int:
    """The runner's own computation before the refactor (pruners.runner._group_key at 8d025c8)."""
    mcfg = cfg.method_config()
    if not isinstance(mcfg, CyclesConfig):
        return 0
    if mcfg.cycles:
        return mcfg.cycles
    layers = list(zip(cfg.widths, cfg.widths[1:]))
    n = sum(a * b for a, b in layers)
    fixed = layers[-1][0] * layers[-1][1] if mcfg.prunable == "hidden" else 0
    return schedules.geometric_rounds(n - fixed, target - fixed, mcfg.rate)


def old_chunks(cfg: SweepConfig, runs, size: int):
    """plan_chunks before the refactor: groups by rounds in increasing order, balanced chunks."""
    groups = {}
    for r in runs:
        groups.setdefault(old_rounds(cfg, r.target), []).append(r)
    chunks = []
    for key in sorted(groups):
        g = groups[key]
        per = math.ceil(len(g) / math.ceil(len(g) / size))
        chunks += [g[i:i + per] for i in range(0, len(g), per)]
    return chunks


# -- rounds, chunks, epochs -------------------------------------------------------------------
CYCLES = [("imp", {"rate": 0.6}), ("imp", {"rate": 0.3, "rewind_step": 2}), ("lrr", {"rate": 0.35}),
          ("lrr", {"rate": 0.5, "prunable": "hidden"}), ("imp", {"cycles": 3}),
          ("lrr", {"cycles": 2, "prunable": "hidden"})]


@pytest.mark.parametrize("method,params", CYCLES)
def test_chunks_share_the_rounds_the_procedure_reports(method, params):
    cfg = sweep(method, params, chunk=3)
    mcfg = cfg.method_config()
    rows = {row["run_id"]: row for row in run_sweep(cfg)}
    runs = build_runs(cfg, load_data(cfg))
    chunks = plan_chunks(cfg, runs, torch.device("cpu"))
    assert [[r.run_id for r in c] for c in chunks] == [[r.run_id for r in c] for c in old_chunks(cfg, runs, 3)]
    keys = []
    for chunk in chunks:
        rounds = {mcfg.retrain_rounds(cfg.layer_weights(), r.target) for r in chunk}
        assert len(rounds) == 1  # one procedure per batched model
        keys.append(rounds.pop())
        for r in chunk:
            extra = json.loads(rows[r.run_id]["metrics"])
            assert extra["rounds"] == keys[-1] == old_rounds(cfg, r.target)  # what the procedure did
            assert extra["chunk_size"] == len(chunk)
            assert extra["epochs_trained"] == epochs_per_run(cfg, r) == cfg.epochs * (keys[-1] + 1)
    assert keys == sorted(keys)
    if params.get("cycles"):
        assert set(keys) == {params["cycles"]}
    else:
        assert len(set(keys)) > 1  # the targets need different numbers of rounds


def test_rounds_from_the_config_alone():
    lw = [16, 64, 8]
    assert CyclesConfig(rate=0.6).retrain_rounds(lw, 20) == schedules.geometric_rounds(88, 20, 0.6) == 2
    assert CyclesConfig(rate=0.6, prunable="hidden").retrain_rounds(lw, 20) == schedules.geometric_rounds(80, 12, 0.6)
    assert CyclesConfig(rate=0.2).retrain_rounds(lw, 88) == 0  # the target is the dense network
    assert CyclesConfig(cycles=5, rate=0.6).retrain_rounds(lw, 20) == 5
    for cfg in (AtInitConfig(rounds=7), GradualConfig(), AfterTrainingConfig(finetune_epochs=3)):
        assert cfg.retrain_rounds(lw, 20) == 0
    assert AtInitConfig(rounds=7).total_epochs(4, lw, 20) == GradualConfig().total_epochs(4, lw, 20) == 4
    assert AfterTrainingConfig(finetune_epochs=3).total_epochs(4, lw, 20) == 7
    assert CyclesConfig(rate=0.6).total_epochs(4, lw, 20) == 12
    assert CyclesConfig(prunable="hidden").pruned(lw) == [16, 64] and CyclesConfig().pruned(lw) == lw


@pytest.mark.parametrize("method,params,epochs", [("spred", {"finetune_epochs": 2}, 3), ("gmp", {"prune_steps": 3}, 1),
                                                  ("snip", {}, 1), ("synflow", {"rounds": 4}, 1)])
def test_epochs_trained_equal_what_the_config_says(method, params, epochs):
    cfg = sweep(method, params, nnz=(20,), seeds=1)
    (row,) = run_sweep(cfg)
    (run,) = build_runs(cfg, load_data(cfg))
    assert json.loads(row["metrics"])["epochs_trained"] == epochs_per_run(cfg, run) == epochs


def test_run_length_checks_are_the_configs():
    cfg = sweep("imp", {"rewind_step": 7}, nnz=(20,), seeds=1, subsample=256)  # 195 points: 1 step per epoch
    with pytest.raises(ValueError, match=r"rewind_step 7 lies beyond the first training run \(1 steps\)"):
        check_feasible(cfg, load_data(cfg))
    check_feasible(sweep("imp", {"rewind_step": 1}, subsample=256), load_data(cfg))
    check_feasible(sweep("lrr", {}, subsample=256), load_data(cfg))
    with pytest.raises(ValueError, match=r"targets \[5, 8\] leave no weight .* holds 8 \(prunable=hidden\)"):
        sweep("gmp", {"prunable": "hidden"}, nnz=(5, 8, 9))
    sweep("gmp", {}, nnz=(1, 8))


# -- before_train -----------------------------------------------------------------------------
EVENTS: list[tuple] = []


class _Counting(Method):
    """Magnitude scores; records every hook the procedures call, with the trainer's counters."""

    def scores(self, ctx):
        return [l.weight().detach().abs() for l in ctx.layers]

    def before_train(self, ctx):
        tr = ctx.trainer
        EVENTS.append(("before_train", tr.epoch_counter, tr.step_counter, tr.steps_per_epoch))

    def after_epoch(self, ctx, stats):
        EVENTS.append(("epoch", stats.epoch, stats.epochs))


def _counting(procedure, config):
    return type(f"Count_{procedure}", (_Counting,), {"name": f"_count_{procedure}", "procedure": procedure,
                                                     "Config": config})


COUNTING = [_counting("at_init", AtInitConfig), _counting("cycles", CyclesConfig),
            _counting("gradual", GradualConfig), _counting("after_training", AfterTrainingConfig)]


@pytest.fixture
def counting_methods():
    load_methods()
    for cls in COUNTING:
        register(cls)
    EVENTS.clear()
    yield
    for cls in COUNTING:
        METHODS.pop(cls.name)
    EVENTS.clear()


@pytest.mark.parametrize("procedure,params,runs", [
    ("at_init", {"rounds": 3}, 1), ("gradual", {"prune_steps": 4}, 1), ("after_training", {}, 1),
    ("after_training", {"finetune_epochs": 1}, 2), ("cycles", {"rate": 0.6}, 3), ("cycles", {"cycles": 3}, 4),
    ("cycles", {"rate": 0.5, "rewind": "step", "rewind_step": 3}, 4), ("cycles", {"rate": 0.5, "rewind": "lr"}, 4)])
def test_before_train_once_per_training_run(counting_methods, procedure, params, runs):
    name = f"_count_{procedure}"
    assert get_method(name).before_train is not Method.before_train
    cfg = sweep(name, params, nnz=(20,), seeds=1, epochs=2)
    (row,) = run_sweep(cfg)
    starts = [i for i, e in enumerate(EVENTS) if e[0] == "before_train"]
    assert len(starts) == runs
    for k, i in enumerate(starts):  # right before the run: no epoch or step of it has happened yet
        _, epoch_counter, step_counter, steps = EVENTS[i]
        assert epoch_counter == 2 * k and step_counter == epoch_counter * steps
        length = 1 if procedure == "after_training" and k == 1 else 2  # the fine-tuning run
        assert EVENTS[i + 1:i + 1 + length] == [("epoch", e, length) for e in range(length)]
    assert len(EVENTS) == len(starts) + json.loads(row["metrics"])["epochs_trained"]


def test_before_train_not_called_once_a_plain_run_stopped():
    """A plain module whose run diverged takes no more steps: no training run begins."""
    EVENTS.clear()

    class Stops(_counting("cycles", CyclesConfig)):
        def after_epoch(self, ctx, stats):
            super().after_epoch(ctx, stats)
            ctx.trainer.diverged[:] = True  # as when its parameters became non-finite

    X, y = spiral_subset(64)
    model = plain_mlp(WIDTHS, init_weights(WIDTHS, 16, 3))
    layers = prunable_layers(model)
    tr = Trainer(model, layers, X, y, [TrainConfig(lr=0.1, epochs=2, seed=0)])
    m = Stops(CyclesConfig(rate=0.6))
    ctx = PruneContext(model, tr, layers, [20], m.config, seeds=[3], method_name=m.name)
    run_method(m, ctx)
    assert ctx.weight_nnz().tolist() == [20] and ctx.extra[0]["rounds"] == 2
    assert [e[0] for e in EVENTS] == ["before_train", "epoch"] and tr.halted and tr.epoch_counter == 1
    EVENTS.clear()


def test_before_train_is_a_no_op_by_default():
    class Plain(Method):
        name, procedure, Config = "_plain", "cycles", CyclesConfig

        def scores(self, ctx):
            return [l.weight().detach().abs() for l in ctx.layers]

    X, y = spiral_subset(64)
    model = BatchedMLP.from_seeds(WIDTHS, [0, 1])
    layers = prunable_layers(model)
    tr = Trainer(model, layers, X, y, [TrainConfig(lr=0.1, epochs=1, seed=s) for s in (0, 1)])
    m = Plain(CyclesConfig(rate=0.6))
    ctx = PruneContext(model, tr, layers, [20, 21], m.config, seeds=[0, 1], method_name=m.name)
    assert m.before_train(ctx) is None
    run_method(m, ctx)
    assert ctx.weight_nnz().tolist() == [20, 21]


# -- the registry ------------------------------------------------------------------------------
def test_registry_lives_in_base_without_a_cycle():
    import ast
    import inspect

    import pruners
    import pruners.base
    assert pruners.load_methods is pruners.base.load_methods and pruners.get_method is pruners.base.get_method
    assert get_method("pilot").name == "pilot" and "imp+pilot" in load_methods()
    tree = ast.parse(inspect.getsource(pruners.base))
    local = [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f)
             if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not local  # base imports nothing back from the package at call time


# -- PILoT's rows are unchanged -----------------------------------------------------------------
PILOT_CASES = [("pilot", {"finetune_epochs": 1}, "batched", 0.1), ("pilot", {"pilot_update": "epoch"}, "batched", 0.1),
               ("imp+pilot", {"rate": 0.6}, "batched", 0.1), ("lrr+pilot", {"rate": 0.6}, "batched", 0.1),
               ("imp+pilot", {"rate": 0.6}, "single", 5.0)]  # plain runs; F = 40 diverges in round 1


def pilot_rows():
    """(method, run_id, train_acc, heldout_acc, final_loss, rounds, pilot_K, pilot_alpha_final, diverged) per row."""
    torch.set_num_threads(1)
    out = []
    for method, params, engine, lr in PILOT_CASES:
        cfg = SweepConfig(method=method, method_params=params, nnz=(40, 300), lrs=(lr,), schedules=("cosine",),
                          seeds=1, epochs=2, subsample=8, device="cpu", engine=engine)
        for row in run_sweep(cfg):
            m = json.loads(row["metrics"])
            out.append((method, row["run_id"], row["train_acc"], row["heldout_acc"], row["final_loss"],
                        m.get("rounds"), m["pilot_K"], m.get("pilot_alpha_final"), row["diverged"]))
    return out


# Measured before the refactor, on the tree at commit 8d025c8 (one CPU thread, torch on CPU):
#   mkdir DIR && git archive 8d025c8 | tar -x -C DIR && cp tests/test_procedures_own.py DIR/tests/ && cd DIR &&
#   PYTHONPATH=. python -c "import sys; sys.path[:0] = ['tests']; \
#       from test_procedures_own import pilot_rows; print(pilot_rows())"
# The last row is a plain run that diverges in its first of 3 rounds: its pilot_K stays the first
# round's (no later training run begins) and no training call ends (no pilot_alpha_final).
# The floats were captured on an Intel CPU; torch's CPU kernels on another CPU (an AMD EPYC gave
# final_loss 0.6409923050 for 0.6409922656) or torch build change their last bits, so floats are
# compared to 1e-5 relative: far below what any change of the procedure moves them (accuracies
# step by 1/6,248 = 1.6e-4 here), far above the kernels' last bits.
PILOT_BEFORE = [
    ('pilot', '39ddd91b1f32dd8e', 0.5904289372599232, 0.590486867392697, 0.640992265962608,
     None, 40.01105040311813, 6.8515336695153285e-06, False),
    ('pilot', '8a016f25246d6ed0', 0.5334507042253521, 0.5331518257527226, 0.6165233421569902,
     None, 40.18195116519928, 8.699629695766625e-06, False),
    ('pilot', 'af29f6eb012b3749', 0.5, 0.5, 0.6979528761703745,
     None, 38.3161301612854, 1e-05, False),
    ('pilot', '95c0578a2eedcc21', 0.5728233034571063, 0.5728699551569507, 0.6182841399872959,
     None, 39.13780128955841, 1e-05, False),
    ('imp+pilot', 'e003e07f0d967ba4', 0.5934699103713188, 0.5936899423446509, 0.6316726821332826,
     1, 30.177369356155396, 7.720479633601816e-06, False),
    ('imp+pilot', 'd8463c5e451c3957', 0.58050576184379, 0.5803971812940423, 0.6895522973601552,
     3, 7.309142917394638, 8.528212622063157e-06, False),
    ('lrr+pilot', 'ea9c1d061aaf1cee', 0.685179257362356, 0.6852978859705318, 0.6282486176826585,
     1, 33.16674494743347, 6.989249496272587e-06, False),
    ('lrr+pilot', '163cdae5a4dc1dca', 0.4969590268886043, 0.4969570787956438, 0.6206388388034171,
     3, 12.698991179466248, 6.716531388604381e-06, False),
    ('imp+pilot', 'f10410af9174380f', 0.5, 0.5, 0.6954488717639644,
     1, 27.884627759456635, 8.03396206584938e-06, False),
    ('imp+pilot', '1457d9c02de3a09b', 0.5, 0.5, 0.6931472758782811,
     3, 38.73396337032318, None, True),
]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)
    return type(a) is type(b) and a == b


def test_pilot_rows_unchanged():
    rows = pilot_rows()
    assert len(rows) == len(PILOT_BEFORE)
    for got, want in zip(rows, PILOT_BEFORE):
        assert len(got) == len(want) and all(_same(a, b) for a, b in zip(got, want)), (got, want)
