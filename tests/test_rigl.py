"""RigL (Evci et al., ICML 2020) and the ``dynamic`` procedure (issue 12, item 1).

Exact counts after every mask update; drop/grow counts on the cosine schedule and no update at
or after T_end; a hand-made update checked against a plain PyTorch gradient; new weights and
their momentum at 0; the initial mask's ERK counts; a conv net; batched equals one by one; the
command line; bad configs; what the procedure does from its config alone.
"""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from cubist.train import TrainConfig
from pruners import PruneContext, density, get_method
from pruners.base import DynamicConfig, Method, MaskUpdate
from pruners.layers import BatchedMLP, check_bias_rule, prunable_layers
from pruners.methods_rigl import RigL, RigLConfig
from pruners.procedures import _prune, run_method, update_masks
from pruners.runner import SweepConfig, build_runs, check_feasible, epochs_per_run, load_data, run_sweep
from pruners.train import Trainer
from pruner_helpers import SmallCNN, spiral_subset

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTHS = (2, 16, 16, 16, 1)
SHAPES = [(16, 2), (16, 16), (16, 16), (1, 16)]


class Spy(RigL):
    """RigL that records every mask update and, at every step, whether the masks changed."""

    def __init__(self, config):
        super().__init__(config)
        self.updates, self.changed, self.checks, self.starts = [], [], [], 0

    def before_train(self, ctx):
        self.starts += 1

    def after_prune(self, ctx):
        self.initial = [(l.mask != 0).clone() for l in ctx.layers]
        self.last = [m.clone() for m in self.initial]

    def after_update(self, ctx, update):
        assert isinstance(update, MaskUpdate)
        tr = ctx.trainer
        fresh = []
        for l, new in zip(ctx.layers, update.new):  # new connections: weight 0, momentum 0
            buf = tr.momentum_buffer(l.param)
            fresh.append(bool((l.rview(l.param)[new] == 0).all()) and
                         (buf is None or bool((l.rview(buf)[new] == 0).all())))
        self.checks.append({"nnz": ctx.weight_nnz().tolist(), "fresh": all(fresh),
                            "bias_rule": check_bias_rule(ctx.layers),
                            "layer_nnz": [(l.mask != 0).reshape(ctx.R, -1).sum(1).tolist() for l in ctx.layers]})
        self.updates.append(update)

    def after_step(self, ctx):
        now = [(l.mask != 0).clone() for l in ctx.layers]
        self.changed.append((ctx.trainer.step_counter, any(not torch.equal(a, b) for a, b in zip(now, self.last))))
        self.last = now


def mlp_ctx(m, targets, seeds, epochs, k=50, widths=WIDTHS):
    X, y = spiral_subset(k)
    model = BatchedMLP.from_seeds(widths, seeds)
    layers = prunable_layers(model)
    tr = Trainer(model, layers, X, y, [TrainConfig(lr=0.1, epochs=epochs, seed=s) for s in seeds])
    return PruneContext(model, tr, layers, targets, m.config, seeds=seeds, method_name=m.name, input_shape=(2,))


# -- the run: counts, schedule, T_end --------------------------------------------------------------
def test_counts_exact_and_on_the_cosine_schedule_until_t_end():
    m = Spy(RigLConfig(update_every=2))                # 7 steps per epoch, 3 epochs: 21 steps
    targets = [30, 50, 65]
    ctx = mlp_ctx(m, targets, seeds=[0, 1, 2], epochs=3)
    run_method(m, ctx)
    total, t_end = 21, 15                               # T_end = floor(0.75 * 21)
    steps = [u.step for u in m.updates]
    assert steps == [2, 4, 6, 8, 10, 12, 14] == list(range(2, t_end, 2))
    assert all(u.end_step == t_end for u in m.updates)
    erk = density.layer_counts("erk", SHAPES, targets)  # (R, L), kept by every update
    for u, check in zip(m.updates, m.checks):
        alpha = 0.3 * (1 + math.cos(math.pi * u.step / t_end)) / 2
        assert u.fraction == pytest.approx(alpha, abs=1e-15)
        want = np.array([[math.floor(alpha * int(n)) for n in row] for row in erk])
        assert (u.counts.numpy() == want).all()
        for i in range(len(SHAPES)):
            assert (u.dropped[i].reshape(3, -1).sum(1).numpy() == want[:, i]).all()
            assert (u.grown[i].reshape(3, -1).sum(1).numpy() == want[:, i]).all()
            assert not (u.new[i] & ~u.grown[i]).any() and not (u.grown[i] & ~u.new[i] & ~u.dropped[i]).any()
        assert check["nnz"] == targets and check["fresh"] and check["bias_rule"]
        assert (np.array(check["layer_nnz"]).T == erk).all()
    # masks change only at update steps, and never at or after T_end
    changed = {s for s, c in m.changed if c}
    assert changed and changed <= set(steps) and all(s < t_end for s in changed)
    assert [s for s, _ in m.changed] == list(range(1, total + 1))
    assert sum(bool(n.any()) for u in m.updates for n in u.new) > 0  # new connections were made
    assert ctx.weight_nnz().tolist() == targets and m.starts == 1          # one training run
    assert [e["mask_updates"] for e in ctx.extra] == [7] * 3
    grown = [sum(int(n[r].sum()) for u in m.updates for n in u.new) for r in range(3)]
    assert [e["weights_grown"] for e in ctx.extra] == grown


def test_initial_mask_has_the_erk_counts_and_each_replica_its_own_draw():
    m = RigL(RigLConfig())
    targets = [30, 30, 65]
    ctx = mlp_ctx(m, targets, seeds=[0, 1, 2], epochs=1)
    _prune(m, ctx, ctx.budgets().numpy())
    got = np.array([[int(l.mask[r].sum()) for l in ctx.layers] for r in range(3)])
    assert (got == density.layer_counts("erk", SHAPES, targets)).all()
    assert not torch.equal(ctx.layers[1].mask[0], ctx.layers[1].mask[1])  # same target, own generator
    alone = mlp_ctx(m, [30], seeds=[1], epochs=1)                       # replica 1 on its own
    _prune(m, alone, alone.budgets().numpy())
    assert all(torch.equal(a.mask[0], b.mask[1]) for a, b in zip(alone.layers, ctx.layers))


# -- one update by hand -------------------------------------------------------------------------------
def test_hand_made_update_drops_smallest_weight_and_grows_largest_dense_gradient():
    widths = (2, 3, 1)
    m = RigL(RigLConfig())
    ctx = mlp_ctx(m, [7, 7], seeds=[0, 1], epochs=1, k=64, widths=widths)
    W1 = torch.tensor([[[0.9, 0.0], [0.5, -0.4], [0.0, 0.03]],     # replica 0: smallest active 0.03 at (2, 1)
                       [[0.3, -0.02], [-0.6, 0.5], [0.0, 0.0]]])   # replica 1: smallest active -0.02 at (0, 1)
    M1 = torch.tensor([[[1, 0], [1, 1], [0, 1]], [[1, 1], [1, 1], [0, 0]]], dtype=torch.bool)
    b1 = torch.tensor([[0.1, 0.2, 0.3], [0.4, -0.1, 0.2]])
    W2 = torch.tensor([[[0.6, -0.5, 0.4]], [[-0.7, 0.8, 0.9]]])
    b2 = torch.tensor([[0.05], [-0.05]])
    first, second = ctx.model.layers
    with torch.no_grad():
        first.weight.copy_(W1 * M1); first.bias.copy_(b1); second.weight.copy_(W2); second.bias.copy_(b2)
    ctx.set_masks([M1, torch.ones(2, 1, 3, dtype=torch.bool)])
    tr = ctx.trainer
    tr.last_batch = ctx.batch(32)
    for p in tr.parameters():                            # momentum everywhere, so zeroing shows
        tr.optimizer.state[p] = torch.full_like(p, 7.0)
    x, y = tr.last_batch

    # the dense gradient by plain PyTorch, per replica
    want_grad, want_drop, want_grow = [], [(2, 1), (0, 1)], []
    for r in range(2):
        w1 = (W1[r] * M1[r]).clone().requires_grad_(True)
        w2 = W2[r].clone().requires_grad_(True)
        z = (torch.relu(x[r] @ w1.T + b1[r]) @ w2.T + b2[r]).squeeze(-1)
        g1, g2 = torch.autograd.grad(nn.functional.binary_cross_entropy_with_logits(z, y[r]), (w1, w2))
        want_grad.append((g1, g2))
        cand = ~M1[r].clone()
        cand[want_drop[r]] = True                         # candidates: inactive or just dropped
        score = torch.where(cand, g1.abs(), torch.tensor(-1.0))
        flat = int(score.flatten().argmax())
        top2 = score.flatten().sort(descending=True).values[:2]
        assert top2[0] > top2[1] + 1e-6                   # a clear winner
        want_grow.append(divmod(flat, 2))
    dense = ctx.dense_gradients(x, y)
    for r in range(2):
        assert torch.allclose(dense[0][r], want_grad[r][0], atol=1e-7)
        assert torch.allclose(dense[1][r], want_grad[r][1], atol=1e-7)
    assert torch.equal(first.weight_mask != 0, M1)        # masks restored

    u = update_masks(m, ctx, step=10, end_step=20, fraction=0.25)  # k = floor(0.25 * 4) = 1; last: floor(0.75) = 0
    assert u.counts.tolist() == [[1, 0], [1, 0]]
    for r in range(2):
        mk = first.weight_mask[r] != 0
        d, g = want_drop[r], want_grow[r]
        assert [tuple(i) for i in u.dropped[0][r].nonzero().tolist()] == [d]
        assert [tuple(i) for i in u.grown[0][r].nonzero().tolist()] == [g]
        assert not mk[d] and mk[g] and int(mk.sum()) == 4
        assert torch.equal(mk, (M1[r] & ~u.dropped[0][r]) | u.grown[0][r])
        assert first.weight[r][g] == 0 and tr.optimizer.state[first.weight][r][g] == 0  # new: 0 and no momentum
        assert first.weight[r][d] == 0 and tr.optimizer.state[first.weight][r][d] == 0  # dropped: zeroed
        kept = M1[r] & mk
        assert torch.equal(first.weight[r][kept], (W1[r] * M1[r])[kept])              # kept: unchanged
        assert (tr.optimizer.state[first.weight][r][kept] == 7).all()
    assert torch.equal(second.weight_mask, torch.ones(2, 1, 3)) and ctx.weight_nnz().tolist() == [7, 7]


def test_a_dropped_weight_grown_back_keeps_its_value():
    """RigL's candidates for growth include the weights just dropped (Algorithm 1; its code keeps
    their value and momentum: no new connection)."""
    m = RigL(RigLConfig())
    ctx = mlp_ctx(m, [7], seeds=[0], epochs=1, k=64, widths=(2, 3, 1))
    M1 = torch.tensor([[[1, 1], [1, 0], [0, 1]]], dtype=torch.bool)
    ctx.set_masks([M1, torch.ones(1, 1, 3, dtype=torch.bool)])
    before = ctx.model.layers[0].weight.detach().clone()

    class GrowDropped(RigL):  # active weights score 10 more: the one just dropped is grown back
        def grow_scores(self, ctx):
            return [10.0 * (l.mask != 0) - l.weight().detach().abs() for l in ctx.layers]

    u = update_masks(GrowDropped(RigLConfig()), ctx, step=1, end_step=2, fraction=0.3)  # floor(1.2) = 1, floor(0.9) = 0
    assert u.counts.tolist() == [[1, 0]] and int(u.dropped[0].sum()) == 1
    assert torch.equal(u.dropped[0], u.grown[0]) and not u.new[0].any()
    assert torch.equal(ctx.model.layers[0].weight_mask != 0, M1)
    assert torch.equal(ctx.model.layers[0].weight.detach(), before) and bool((before[M1] != 0).all())


# -- a conv net -------------------------------------------------------------------------------------
def test_conv_net_updates_keep_counts_and_batchnorm_statistics():
    torch.manual_seed(0)
    net = SmallCNN()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 1, 6, 6, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    layers = prunable_layers(net)
    tr = Trainer(net, layers, X, y, [TrainConfig(lr=0.05, epochs=2, batch_size=16, seed=0)], loss="ce")
    m = Spy(RigLConfig(update_every=1))                       # 8 steps: updates after 1..5 (T_end 6)
    ctx = PruneContext(net, tr, layers, [80], m.config, seeds=[0], method_name="rigl", input_shape=(1, 6, 6))
    run_method(m, ctx)
    shapes = [l.shape for l in layers]
    erk = density.layer_counts("erk", shapes, [80])[0]
    assert [u.step for u in m.updates] == [1, 2, 3, 4, 5]
    assert all(c["nnz"] == [80] and c["fresh"] and [n[0] for n in c["layer_nnz"]] == list(erk) for c in m.checks)
    assert sum(bool(n.any()) for u in m.updates for n in u.new) > 0
    stats = [b.clone() for b in net.buffers()]
    grads = ctx.dense_gradients(*ctx.step_batch())
    assert all(torch.equal(a, b) for a, b in zip(stats, net.buffers()))  # BatchNorm statistics untouched
    assert [tuple(gr.shape[1:]) for gr in grads] == shapes and bool((grads[1][layers[1].mask == 0] != 0).any())
    assert ctx.weight_nnz().tolist() == [80]


# -- batched equals one by one; the command line; the config ----------------------------------------
def test_batched_sweep_equals_runs_one_by_one():
    cfg = dict(method="rigl", method_params={"update_every": 3}, nnz=(20, 40), lrs=(0.1,), schedules=("cosine",),
               seeds=2, epochs=2, subsample=50, device="cpu")
    batched = run_sweep(SweepConfig(**cfg))
    single = {r["run_id"]: r for r in run_sweep(SweepConfig(**cfg, engine="single"))}
    assert len(batched) == len(single) == 4
    for b in batched:
        s = single[b["run_id"]]
        assert b["mask_bits"] == s["mask_bits"] and b["weight_nnz"] == s["weight_nnz"] == b["target_nnz"]
        assert abs(b["final_loss"] - s["final_loss"]) < 1e-4
        assert json.loads(b["metrics"])["mask_updates"] == 3   # 14 steps, T_end 10: after 3, 6, 9


def test_cli_sweep_end_to_end(tmp_path, capsys):
    from cubist.cli import main
    from cubist.store import ResultStore
    out = str(tmp_path / "st")
    args = ["prune", "--method", "rigl", "--widths", "3,3,3", "--nnz", "15,20", "--lrs", "0.1", "--schedules",
            "constant", "--epochs", "1", "--update-every", "50", "--out", out, "--quiet", "--jobs", "1"]
    assert main(args) == 0
    assert "prune rigl: 2 runs done" in capsys.readouterr().out
    df = ResultStore(out).load()
    assert sorted(df["weight_nnz"]) == [15, 20] and (df["weight_nnz"] == df["target_nnz"]).all()
    for _, row in df.iterrows():
        params = json.loads(row["params"])
        assert params == {"method": "rigl", "procedure": "dynamic", "scope": "layer", "density_scheme": "erk",
                          "prunable": "all", "update_every": 50, "drop_fraction": 0.3, "end_fraction": 0.75}
        extra = json.loads(row["metrics"])
        assert extra["mask_updates"] == 5 and extra["epochs_trained"] == 1   # 390 steps, T_end 292
    assert main(args) == 0                                                   # resumed: nothing left
    assert "0 runs done, 2 already stored" in capsys.readouterr().out


@pytest.mark.parametrize("flags,needle", [
    (["--update-every", "0"], "update_every must be >= 1, got 0"),
    (["--drop-fraction", "0"], "drop_fraction must be in (0, 1], got 0.0"),
    (["--drop-fraction", "1.5"], "drop_fraction must be in (0, 1], got 1.5"),
    (["--end-fraction", "0"], "end_fraction must be in (0, 1], got 0.0"),
    (["--end-fraction", "1.01"], "end_fraction must be in (0, 1], got 1.01"),
    (["--scope", "global"], "scope must be layer"),
    (["--density-scheme", "bogus"], "unknown density scheme 'bogus'"),
    (["--update-every", "300", "--epochs", "1"], "update_every 300 leaves no mask update before T_end = 292"),
    (["--rate", "0.5"], "--rate does not apply to method rigl"),
])
def test_bad_config_is_one_line(tmp_path, capsys, flags, needle):
    from cubist.cli import main
    out = tmp_path / "st"
    assert main(["prune", "--method", "rigl", "--widths", "3,3,3", "--nnz", "15", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists() or not any(out.rglob("*.parquet"))


def test_gmp_refuses_the_dynamic_flags(capsys):
    from cubist.cli import main
    assert main(["prune", "--method", "gmp", "--update-every", "5"]) == 2
    assert "--update-every does not apply to method gmp" in capsys.readouterr().err


def test_what_the_procedure_does_from_the_config_alone():
    cfg = DynamicConfig()
    lw = [32, 256, 256, 16]
    assert cfg.retrain_rounds(lw, 50) == 0 and cfg.total_epochs(50, lw, 50) == 50
    steps = 50 * 390                                            # the paper's protocol on the full spiral
    assert cfg.end_step(steps) == 14625 and cfg.update_steps(steps) == list(range(100, 14625, 100))
    assert len(cfg.update_steps(steps)) == 146
    assert cfg.drop_fraction_at(100, steps) == pytest.approx(0.15 * (1 + math.cos(math.pi * 100 / 14625)))
    assert DynamicConfig(end_fraction=0.7).end_step(10) == 7    # floor, robust to 0.7 * 10 = 6.999...
    cfg.check_run_length(135)                                   # T_end = 101: one update, after 100 steps
    with pytest.raises(ValueError, match="update_every 100 leaves no mask update"):
        cfg.check_run_length(133)                               # T_end = 99
    sweep = SweepConfig(method="rigl", method_params={"update_every": 2}, widths=(2, 8, 8, 1), nnz=(20,), lrs=(0.1,),
                        schedules=("cosine",), epochs=3, subsample=64, device="cpu")
    data = load_data(sweep)
    check_feasible(sweep, data)
    (run,) = build_runs(sweep, data)
    (row,) = run_sweep(sweep)
    assert json.loads(row["metrics"])["epochs_trained"] == epochs_per_run(sweep, run) == 3


def test_a_dynamic_method_without_grow_scores_says_so():
    class NoGrow(Method):
        name, Config, procedure = "_nogrow", DynamicConfig, "dynamic"

        def scores(self, ctx):
            return [l.weight().detach().abs() for l in ctx.layers]

    m = NoGrow(DynamicConfig(update_every=1))
    ctx = mlp_ctx(m, [40], seeds=[0], epochs=1)
    with pytest.raises(NotImplementedError, match="NoGrow follows the dynamic procedure but has no grow_scores"):
        run_method(m, ctx)
    assert get_method("rigl") is RigL
