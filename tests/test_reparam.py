"""Reparametrised methods: PILoT, spred, STR, DWF (pruners.reparam, pruners.methods_reparam)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import cubist
from cubist.train import TrainConfig
from pruners import PruneContext, get_method
from pruners.layers import BatchedMLP, prunable_layers
from pruners.methods_reparam import PilotSchedule, l1_norms, pilot_alpha_update
from pruners.procedures import run_method
from pruners.reparam import (Factorisation, SoftThreshold, dwf_bounds, dwf_factors, pilot_factors,
                             truncated_second_moment)

METHODS = ["pilot", "spred", "str", "dwf"]


# -- initialisations ---------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_pilot_init_product_and_balance(beta):
    x0 = torch.randn(3, 16, 16) * 0.5
    x0[0, 0, 0] = 0.0
    m, w = pilot_factors(x0, beta)
    assert torch.allclose(m * w, x0, atol=1e-6)
    assert torch.allclose(m * m - w * w, torch.full_like(x0, beta), atol=1e-5)
    assert bool((m > 0).all()) and w[0, 0, 0] == 0


def test_fold_gives_back_x():
    x0 = torch.randn(2, 5, 7)
    for spec in (Factorisation(2, "pilot"), Factorisation(2, "balanced"), Factorisation(4, "balanced"),
                 Factorisation(1, "identity")):
        mod = spec.build(x0)
        assert torch.allclose(mod(), x0, atol=1e-5), spec
        plain = spec.build(x0[:1], replicated=False)
        assert plain().shape == x0.shape[1:] and torch.allclose(plain(), x0[0], atol=1e-5)
    # spred: balanced u = |x|^(1/2), sign on v
    u, v = Factorisation(2, "balanced").build(x0).factors_r()
    assert torch.allclose(u, x0.abs().sqrt(), atol=1e-6) and bool((u >= 0).all())


def test_str_threshold_map():
    w = torch.tensor([[[-0.5, -0.1, 0.0, 0.05, 0.3]], [[-0.5, -0.1, 0.0, 0.05, 0.3]]])
    mod = SoftThreshold(s_init=0.0).build(w)
    with torch.no_grad():
        mod.s[1].fill_(math.log(0.2 / 0.8))  # sigmoid(s) = 0.2 in replica 1
    x = mod()
    assert torch.allclose(x[0], torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0]]))  # threshold 0.5 kills all
    assert torch.allclose(x[1], torch.tensor([[-0.3, 0.0, 0.0, 0.0, 0.1]]), atol=1e-6)
    assert torch.allclose(mod.threshold(), torch.tensor([0.5, 0.2]))
    # d x / d s = -sigmoid'(s) sign(W) where |W| > threshold, 0 elsewhere
    (x[1, 0, 4] - x[1, 0, 0]).backward()  # W = 0.3 and W = -0.5 survive: each moves by -sign(W) sigmoid'
    sig = 0.2
    assert torch.allclose(mod.s.grad[1].reshape(()), torch.tensor(-2 * sig * (1 - sig)), atol=1e-6)
    assert mod.s.grad.shape == mod.s.shape == (2, 1, 1)


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("match", ["variance", "none"])
def test_dwf_init_bounds_and_variance(depth, match):
    fan = 16
    s = 1 / math.sqrt(3 * fan)
    x0 = torch.zeros(2, 384, fan)
    gens = [torch.Generator().manual_seed(r) for r in range(2)]
    factors = dwf_factors(x0, depth, match=match, generator=gens)
    sigma, lo, hi = dwf_bounds(s, depth, 0.25, match)
    if match == "none":
        assert math.isclose(lo, (s / 4) ** (1 / depth)) and math.isclose(hi, min(1, (2 * s) ** (1 / depth)))
    for f in factors:
        assert f.shape == x0.shape
        assert bool((f.abs() >= lo).all()) and bool((f.abs() <= hi).all())
        assert 0.4 < float((f > 0).float().mean()) < 0.6
    prod = Factorisation(depth, "dwf").compose(*factors)
    want = s if match == "variance" else math.sqrt(truncated_second_moment(s ** (1 / depth), lo, hi) ** depth)
    assert abs(float(prod.std()) / want - 1) < 0.04
    if match == "variance":  # the factor's second moment is matched exactly
        assert math.isclose(truncated_second_moment(sigma, lo, hi), s ** (2 / depth), rel_tol=1e-9)
    else:  # the literal truncation shrinks the product's std
        assert want < 0.9 * s
    # independent draws per replica
    assert not torch.equal(factors[0][0], factors[0][1])


def test_dwf_init_per_replica_generators_reproduce():
    x0 = torch.zeros(3, 4, 5)
    a = dwf_factors(x0, 3, generator=[torch.Generator().manual_seed(s) for s in (7, 8, 9)])
    b = dwf_factors(x0[:1], 3, generator=[torch.Generator().manual_seed(8)])
    assert all(torch.equal(fa[1], fb[0]) for fa, fb in zip(a, b))


# -- PILoT's schedule --------------------------------------------------------------------------
def test_pilot_alpha_update_rule():
    a = pilot_alpha_update(1.0, acc=[0.9, 0.8, 0.9, 0.9], prev_acc=[0.9, 0.9, 0.8, 0.8], l1=[10, 10, 4, 10],
                           K=5.0, k=3, T=10, delta=2.0)
    # no drop & l1>=K: grow; accuracy dropped: shrink; l1 below K: shrink; improved: grow
    assert a.tolist() == [2.0, 0.5, 0.5, 2.0]
    late = pilot_alpha_update(1.0, acc=[1.0], prev_acc=[0.5], l1=[10], K=5.0, k=6, T=10, delta=2.0)
    assert late.tolist() == [0.5]  # k > T/2: always shrink


def test_pilot_schedule_scripted_sequence():
    T, delta = 8, 1.5
    accs = [0.6, 0.7, 0.7, 0.65, 0.8, 0.9, 0.95, 0.96]
    l1s = [20, 18, 15, 14, 9, 8, 8, 8]
    K = 10.0
    sched = PilotSchedule(alpha0=0.01, delta=delta, K=[K], T=T, prev_acc=[0.5])
    expected, alpha, prev = [], 0.01, 0.5
    for k, (acc, l1) in enumerate(zip(accs, l1s), start=1):
        grow = acc >= prev and l1 >= K and k <= T / 2
        alpha = alpha * delta if grow else alpha / delta
        prev = acc
        expected.append(alpha)
        got = sched.update([acc], [l1])
        assert math.isclose(float(got[0]), alpha, rel_tol=1e-12)
    # grow, grow, grow, shrink (drop), shrink (l1 < K), shrink x3 (second half): ups = 3
    assert int(sched.ups[0]) == 3 and sched.k == T
    assert math.isclose(float(sched.alpha_max[0]), 0.01 * delta ** 3, rel_tol=1e-12)
    assert float(sched.alpha[0]) <= 0.01  # the regularisation dies out: alpha_T <= alpha_0


# -- methods on the batched MLP and on a CNN ---------------------------------------------------
@pytest.fixture(scope="module")
def spiral_small():
    X, y = cubist.make_spiral()
    idx = np.random.default_rng(0).permutation(len(X))[:256]
    return X[idx], y[idx]


def make_ctx(name, X, y, targets, *, model=None, loss="bce", epochs=2, **params):
    from pruners.train import Trainer
    R = len(targets)
    if model is None:
        model = BatchedMLP.from_seeds((2, 16, 16, 16, 1), list(range(R)))
    layers = prunable_layers(model)
    tr = Trainer(model, layers, X, y, [TrainConfig(lr=0.1, epochs=epochs, batch_size=64, seed=s) for s in range(R)],
                 loss=loss)
    cls = get_method(name)
    method = cls(cls.Config(**params))
    ctx = PruneContext(model, tr, layers, targets, method.config, seeds=list(range(R)), method_name=name)
    return method, ctx


def check_final(ctx):
    assert ctx.weight_nnz().tolist() == ctx.targets.tolist()
    for l in ctx.all_layers:
        assert l.reparam is None
        w = l.weight().detach()
        assert bool((w[l.mask == 0] == 0).all())
        assert bool((l.rview(l.param).detach()[l.mask == 0] == 0).all())
        assert bool(torch.isfinite(w).all())


@pytest.mark.parametrize("name", METHODS)
def test_methods_exact_budget_per_replica_mlp(name, spiral_small):
    method, ctx = make_ctx(name, *spiral_small, [17, 40, 90])
    run_method(method, ctx)
    check_final(ctx)
    for r, extra in enumerate(ctx.extra):
        assert 0 <= extra["natural_nnz"] <= 560 and extra["natural_nnz_tol"] <= extra["natural_nnz"]
        assert extra["l1_init"] > 0
    if name == "pilot":
        assert all("pilot_K" in e and e["pilot_updates"] == 2 * 4 for e in ctx.extra)
    if name == "str":
        assert all(len(e["str_thresholds"]) == 4 for e in ctx.extra)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("name", METHODS)
def test_methods_run_on_a_cnn(name):
    torch.manual_seed(0)
    X = torch.randn(128, 1, 6, 6)
    y = torch.randint(0, 3, (128,))
    method, ctx = make_ctx(name, X, y, [60], model=SmallCNN(), loss="ce", finetune_epochs=1)
    run_method(method, ctx)
    check_final(ctx)
    conv = ctx.layers[0]
    assert conv.shape == (4, 1, 3, 3)


@pytest.mark.parametrize("name", ["imp+pilot", "lrr+pilot"])
def test_pilot_in_cycles(name, spiral_small):
    method, ctx = make_ctx(name, *spiral_small, [300, 330], epochs=1, rate=0.3)
    run_method(method, ctx)
    assert ctx.weight_nnz().tolist() == [300, 330]
    for l in ctx.layers:  # PILoT stays installed through the last round; masked x stays zero
        assert l.reparam is not None
        assert bool((l.weight().detach()[l.mask == 0] == 0).all())
    assert ctx.extra[0]["rounds"] == 2


def test_finetune_keeps_mask(spiral_small):
    method, ctx = make_ctx("spred", *spiral_small, [30, 45], finetune_epochs=1)
    run_method(method, ctx)
    check_final(ctx)


# -- objectives ---------------------------------------------------------------------------------
def test_dwf_depth2_objective_equals_spred(spiral_small):
    lam = 3e-3
    spred, ctx_s = make_ctx("spred", *spiral_small, [40], spred_lambda=lam)
    dwf, ctx_d = make_ctx("dwf", *spiral_small, [40], dwf_depth=2, dwf_lambda=lam)
    spred.setup(ctx_s)
    dwf.setup(ctx_d)
    with torch.no_grad():  # the same u, v in both
        for ms, md in zip(spred.modules, dwf.modules):
            for fs, fd in zip(ms.factors(), md.factors()):
                fd.copy_(fs)
    x, y = ctx_s.batch()
    obj_s = ctx_s.loss(x, y).sum() + spred.penalty(ctx_s).sum()
    obj_d = ctx_d.loss(x, y).sum() + dwf.penalty(ctx_d).sum()
    assert torch.allclose(obj_s, obj_d, rtol=1e-6)
    # and the penalty is lambda/2 (||u||^2 + ||v||^2), minus the optimiser's own decay it cancels
    sq = sum(float(m.sq_norm().detach().sum()) for m in spred.modules)
    assert math.isclose(float(spred.penalty(ctx_s).detach().sum()), (lam / 2 - 5e-4 / 2) * sq, rel_tol=1e-5)


def test_factor_decay_is_the_methods_own(spiral_small):
    """The protocol's weight decay on the factors is cancelled: with lambda = 0 a zero loss
    gradient leaves the factors unchanged by an optimiser step."""
    method, ctx = make_ctx("spred", *spiral_small, [40, 40], spred_lambda=0.0)
    method.setup(ctx)
    before = [f.detach().clone() for m in method.modules for f in m.factors()]
    opt = ctx.trainer.optimizer
    opt.zero_grad()
    method.penalty(ctx).sum().backward()
    lr = torch.full((2,), 0.1)
    opt.step(lr)
    after = [f.detach() for m in method.modules for f in m.factors()]
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(after, before))


def test_dwf_collapse_gives_exact_zeros(spiral_small):
    method, ctx = make_ctx("dwf", *spiral_small, [40, 40], dwf_depth=4)
    method.setup(ctx)
    with torch.no_grad():
        f0 = method.modules[1].factors()[0]
        f0[0, 0, :5] = 0.0                       # collapsed factor entries
        for f in method.modules[1].factors():
            f[1, 1, :3] = 1e-12                  # product 1e-48 underflows to exactly 0 in float32
    method.finalize(ctx)
    x = ctx.layers[1].weight().detach()
    assert bool((x[0, 0, :5] == 0).all()) and bool((x[1, 1, :3] == 0).all())
    assert ctx.extra[0]["natural_nnz"] == 560 - 5 and ctx.extra[1]["natural_nnz"] == 560 - 3
    assert ctx.extra[0]["dwf_collapsed_factors"] == 5 and ctx.extra[1]["dwf_collapsed_factors"] == 0
    assert ctx.layers[1].reparam is None


def test_pilot_init_keeps_the_network_function(spiral_small):
    method, ctx = make_ctx("pilot", *spiral_small, [40, 40])
    x, y = ctx.batch()
    before = ctx.loss(x, y).detach()
    l1_before = l1_norms(ctx)
    method.setup(ctx)
    assert torch.allclose(ctx.loss(x, y).detach(), before, atol=1e-6)
    assert torch.allclose(l1_norms(ctx), l1_before, rtol=1e-6)
    m, w = method.modules[0].factors_r()
    assert torch.allclose(m * m - w * w, torch.ones_like(m), atol=1e-5)


def test_pilot_epoch_updates_and_absolute_k(spiral_small):
    method, ctx = make_ctx("pilot", *spiral_small, [40, 60], epochs=3, pilot_update="epoch", pilot_k_abs=1e9,
                           pilot_alpha0=1e-3, delta=2.0)
    run_method(method, ctx)
    check_final(ctx)
    for e in ctx.extra:
        assert e["pilot_updates"] == 3 and e["pilot_K"] == 1e9
        # ||x||_1 < K always: alpha only shrinks, 3 times
        assert e["pilot_alpha_ups"] == 0 and math.isclose(e["pilot_alpha_final"], 1e-3 / 8)


@pytest.mark.parametrize("name", METHODS)
def test_batched_equals_single(name, spiral_small):
    """Replica 1 of a batched run equals the same run on a plain MLP (its own init and randomness)."""
    from cubist.model import init_weights
    from pruners.layers import plain_mlp
    from pruners.train import Trainer
    X, y = spiral_small
    widths = (2, 16, 16, 16, 1)
    cls = get_method(name)
    out = []
    for model, seeds, targets in ((BatchedMLP.from_seeds(widths, [0, 1]), [0, 1], [30, 45]),
                                  (plain_mlp(widths, init_weights(widths, 16, 1)), [1], [45])):
        layers = prunable_layers(model)
        tr = Trainer(model, layers, X, y, [TrainConfig(lr=0.05, epochs=1, batch_size=64, seed=s) for s in seeds])
        method = cls(cls.Config())
        ctx = PruneContext(model, tr, layers, targets, method.config, seeds=seeds, method_name=name)
        run_method(method, ctx)
        out.append(([l.weight().detach()[-1] for l in layers], ctx.extra[-1]))
    (wb, eb), (ws, es) = out
    for a, b in zip(wb, ws):
        assert torch.equal(a != 0, b != 0) and torch.allclose(a, b, atol=1e-5)
    assert eb["natural_nnz"] == es["natural_nnz"]


@pytest.mark.parametrize("name,options", [("dwf", {"prunable": "hidden"}),
                                          ("pilot", {"scope": "layer", "density_scheme": "erk"})])
def test_framework_options(name, options, spiral_small):
    method, ctx = make_ctx(name, *spiral_small, [60, 80], **options)
    run_method(method, ctx)
    check_final(ctx)
    if options.get("prunable") == "hidden":  # the output layer was never reparametrised and stays dense
        assert bool((ctx.all_layers[-1].mask != 0).all())
