"""FORCE, Iter-SNIP, ProsPr and SNIP/GraSP's xavier re-initialisation, against hand-written
plain PyTorch, finite differences and constructed cases."""
import json
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cubist.model import init_weights
from cubist.train import TrainConfig, epoch_permutation
from pruners import PruneContext, get_method
from pruners.layers import BatchedMLP, check_bias_rule, plain_mlp, prunable_layers
from pruners.methods import SNIPConfig, GraSPConfig
from pruners.methods_force import ForceConfig, IterSNIPConfig
from pruners.methods_prospr import ProsPrConfig, meta_loss
from pruners.procedures import run_method
from pruners.scoring import run_batch
from pruners.train import Trainer
from pruner_helpers import spiral_subset

pytestmark = pytest.mark.usefixtures("one_thread")

NEW = ("force", "itersnip", "prospr")
WIDE = (2, 16, 16, 16, 1)


def method(name, **params):
    cls = get_method(name)
    return cls(cls.Config(**params))


def plain_ctx(m, widths=(2, 4, 3, 1), target=8, *, init_seed=5, seed=3, batch_size=32, lr=0.1, k=50):
    """One plain MLP (R = 1) on every k-th spiral point; returns (ctx, its init params, X, y)."""
    params = init_weights(widths, None, init_seed)
    net = plain_mlp(widths, params)
    layers = prunable_layers(net)
    X, y = spiral_subset(k)
    tr = Trainer(net, layers, X, y, [TrainConfig(lr=lr, epochs=1, batch_size=batch_size, seed=seed)])
    ctx = PruneContext(net, tr, layers, [target], m.config, seeds=[init_seed], method_name=m.name, input_shape=(2,))
    return ctx, params, torch.as_tensor(X), torch.as_tensor(y)


def batched_ctx(m, targets, seeds, lrs=None, k=50, widths=WIDE):
    X, y = spiral_subset(k)
    model = BatchedMLP.from_seeds(widths, seeds)
    layers = prunable_layers(model)
    lrs = lrs or [0.1] * len(seeds)
    tr = Trainer(model, layers, X, y, [TrainConfig(lr=lr, epochs=1, seed=s) for s, lr in zip(seeds, lrs)])
    return PruneContext(model, tr, layers, targets, m.config, seeds=seeds, method_name=m.name, input_shape=(2,))


def hand_forward(x, weights, biases):
    """The plain MLP by hand: ReLU between layers, one logit."""
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = h @ w.T + b
        if i < len(weights) - 1:
            h = torch.relu(h)
    return h.squeeze(-1)


def hand_batch(X, y, seed, k, size):
    idx = epoch_permutation(seed, 0, len(X))[k * size:(k + 1) * size]
    return X[idx], y[idx]


def record_steps(m):
    """Wrap ``m.after_prune``: the masks after every pruning step (as boolean (R, *) tensors)."""
    steps = []
    orig = m.after_prune

    def after_prune(ctx):
        orig(ctx)
        steps.append([(l.mask != 0).clone() for l in ctx.layers])
    m.after_prune = after_prune
    return steps


# -- the k-th batch --------------------------------------------------------------------------
def test_run_batch_is_the_runs_kth_batch():
    m = method("itersnip")
    ctx = batched_ctx(m, [40, 50], seeds=[0, 1])
    tr = ctx.trainer
    x0, y0 = ctx.batch(128)
    x, y = run_batch(ctx, 0, 128)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    steps = tr.steps_per_epoch
    for k in (3, steps, steps + 2):  # with the training batch size: the trainer's own k-th batch
        xs, ys = tr._epoch_batches(k // steps)
        x, y = run_batch(ctx, k, tr.batch_size)
        assert torch.equal(x, xs[:, k % steps]) and torch.equal(y, ys[:, k % steps])
    x, y = run_batch(ctx, 1, 10 ** 6)  # larger than the data: every point, in epoch 1's order
    assert x.shape[1] == tr.n and torch.equal(x[0], tr.X[torch.as_tensor(epoch_permutation(0, 1, tr.n))])


# -- FORCE and Iter-SNIP by hand -------------------------------------------------------------------
def test_force_and_itersnip_steps_match_hand_computation():
    m = method("force", rounds=3, score_batch=32)
    ctx, params, X, y = plain_ctx(m)
    W0 = [torch.as_tensor(w) for w, _ in params]
    B0 = [torch.as_tensor(b) for _, b in params]

    def hand(mask, bias_mask, k, weights_for_score):
        xb, yb = hand_batch(X, y, 3, k, 32)
        eff = [(w * mk).requires_grad_(True) for w, mk in zip(W0, mask)]
        loss = F.binary_cross_entropy_with_logits(hand_forward(xb, eff, [b * bm for b, bm in zip(B0, bias_mask)]), yb)
        g = torch.autograd.grad(loss, eff)
        return [(w * gi).abs() for w, gi in zip(weights_for_score(eff), g)]

    m.setup(ctx)
    ones = [torch.ones_like(w) for w in W0]
    got = m.scores(ctx)  # step 0: the dense network, SNIP's score on batch 0
    want = hand(ones, [torch.ones_like(b) for b in B0], 0, lambda eff: W0)
    assert all(torch.allclose(a[0], b, rtol=1e-5, atol=1e-8) for a, b in zip(got, want))
    ctx.prune_to([14], got)
    m.after_prune(ctx)
    mask = [l.mask[0].clone() for l in ctx.layers]
    bias_mask = [l.bias_mask[0].clone() for l in ctx.layers]
    assert sum(int(mk.sum()) for mk in mask) == 14 and any(not bool(bm.all()) for bm in bias_mask)
    ctx.round = 1
    got = m.scores(ctx)  # FORCE: |theta_0 * g(theta_0 * m)| for every weight, pruned ones too
    want = hand(mask, bias_mask, 1, lambda eff: W0)
    assert all(torch.allclose(a[0], b, rtol=1e-5, atol=1e-8) for a, b in zip(got, want))
    assert all(bool((l.mask != 0).all()) for l in ctx.layers)  # reopened: the next top-k chooses among all
    assert any(bool((a[0][mk == 0] > 0).any()) for a, mk in zip(got, mask))

    s = method("itersnip", rounds=3, score_batch=32)
    sctx, _, _, _ = plain_ctx(s)
    sctx.set_masks([mk.bool().unsqueeze(0) for mk in mask])
    sctx.round = 1
    got = s.scores(sctx)  # Iter-SNIP: |theta * g| of the masked network (0 where pruned)
    want = hand(mask, bias_mask, 1, lambda eff: [e.detach() for e in eff])
    assert all(torch.allclose(a[0], b, rtol=1e-5, atol=1e-8) for a, b in zip(got, want))


def _tiny_cnn():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 1))
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 1, 4, 4, generator=g)
    y = (torch.rand(40, generator=g) > 0.5).float()
    return net, X, y


def _cnn_ctx(m, target, lr=0.1, dtype=torch.float32):
    net, X, y = _tiny_cnn()
    net.to(dtype)
    layers = prunable_layers(net)
    tr = Trainer(net, layers, X.to(dtype), y, [TrainConfig(lr=lr, epochs=1, batch_size=8, seed=2)])
    tr.y = tr.y.to(dtype)
    return PruneContext(net, tr, layers, [target], m.config, seeds=[7], method_name=m.name, input_shape=(1, 4, 4)), X, y


def test_force_scores_on_a_cnn_match_hand_computation():
    m = method("force", rounds=2, score_batch=8)
    ctx, X, y = _cnn_ctx(m, 6)
    conv, lin = ctx.layers[0].module, ctx.layers[1].module
    W0 = [conv.weight_orig.detach().clone(), lin.weight_orig.detach().clone()]
    b0 = [conv.bias_orig.detach().clone(), lin.bias_orig.detach().clone()]
    m.setup(ctx)
    ctx.prune_to([12], m.scores(ctx))
    m.after_prune(ctx)
    mask = [l.mask[0].clone() for l in ctx.layers]
    ctx.round = 1
    got = m.scores(ctx)
    xb, yb = hand_batch(X, y, 2, 1, 8)
    eff = [(w * mk).requires_grad_(True) for w, mk in zip(W0, mask)]
    z = F.linear(torch.relu(F.conv2d(xb, eff[0], b0[0])).flatten(1), eff[1], b0[1]).squeeze(-1)
    g = torch.autograd.grad(F.binary_cross_entropy_with_logits(z, yb), eff)
    for a, w, gi in zip(got, W0, g):
        assert torch.allclose(a[0], (w * gi).abs(), rtol=1e-5, atol=1e-8)


# -- FORCE regrows, Iter-SNIP cannot -----------------------------------------------------------------
def _regrow_case(name):
    """Logistic regression on two points: w = (2, 0.5, -1.25), x = (1, 0, 1) -> 1, (0, 1, 1) -> 0.

    Dense: z = (0.75, -0.75), the residuals cancel in w3's gradient, so step 0 (keep 2 of 3)
    prunes w3. At (2, 0.5, 0): z = (2, 0.5), |w_i g_i| = (0.119, 0.156, 0.315): FORCE keeps w3.
    """
    net = nn.Linear(3, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[2.0, 0.5, -1.25]]))
        net.bias.zero_()
    layers = prunable_layers(net)
    X = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    tr = Trainer(net, layers, X, torch.tensor([1.0, 0.0]), [TrainConfig(lr=0.1, epochs=1, batch_size=2, seed=0)])
    m = method(name, rounds=2, score_batch=2)
    ctx = PruneContext(net, tr, layers, [1], m.config, seeds=[0], method_name=name, input_shape=(3,))
    return m, ctx


def test_force_regrows_a_weight_itersnip_cannot():
    m, ctx = _regrow_case("force")
    steps = record_steps(m)
    starts = []
    orig = ctx.trainer.train
    ctx.trainer.train = lambda *a, **k: (starts.append(ctx.layers[0].param.detach().clone()), orig(*a, **k))
    run_method(m, ctx)
    assert [s[0][0].int().tolist() for s in steps] == [[[1, 1, 0]], [[0, 0, 1]]]
    assert torch.equal(starts[0], torch.tensor([[0.0, 0.0, -1.25]]))  # trained from theta_0 * m: w3 is back
    assert ctx.extra[0]["regrown"] == 1
    s, sctx = _regrow_case("itersnip")
    steps = record_steps(s)
    run_method(s, sctx)
    assert [st[0][0].int().tolist() for st in steps] == [[[1, 1, 0]], [[0, 1, 0]]]


# -- the keep schedule ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["force", "itersnip"])
def test_keep_schedule_counts_per_step(name):
    m = method(name)
    targets = [15, 40, 65]
    ctx = batched_ctx(m, targets, seeds=[0, 1, 2])
    steps = record_steps(m)
    ctx.trainer.train = lambda *a, **k: None  # the schedule only
    run_method(m, ctx)
    N = 560
    assert len(steps) == m.config.rounds == 10
    for r, F_ in enumerate(targets):
        got = [sum(int(mk[r].sum()) for mk in s) for s in steps]
        keep = [(F_ / N) ** ((x + 1) / 10) for x in range(10)]  # FORCE's keep fraction after step x
        assert got == [round(N * k) for k in keep[:-1]] + [F_]
        assert all(0 <= g - math.floor(N * k + 1e-9) <= 1 for g, k in zip(got, keep))  # FORCE's code floors
        assert got[-1] == F_ == int(ctx.weight_nnz()[r])


# -- one round is SNIP ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,params", [("itersnip", {"rounds": 1}), ("force", {"rounds": 1}),
                                         ("prospr", {"inner_steps": 0})])
def test_one_round_or_no_inner_step_is_snip(name, params):
    masks = {}
    for n, p in ((name, params), ("snip", {})):
        m = method(n, **p)
        ctx = batched_ctx(m, [20, 45], seeds=[3, 4])
        ctx.trainer.train = lambda *a, **k: None
        run_method(m, ctx)
        masks[n] = [l.mask.clone() for l in ctx.layers]
    assert all(torch.equal(a, b) for a, b in zip(masks[name], masks["snip"]))


# -- ProsPr's meta-gradient ------------------------------------------------------------------------
def _mlp64(m, lr=0.5):
    ctx, params, X, y = plain_ctx(m, widths=(2, 3, 1), target=4, batch_size=16, lr=lr)
    ctx.model.double()
    ctx.trainer.X, ctx.trainer.y = ctx.trainer.X.double(), ctx.trainer.y.double()
    return ctx


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_prospr_meta_gradient_matches_finite_differences(net):
    m = method("prospr", score_batch=8)
    ctx = _mlp64(m) if net == "mlp" else _cnn_ctx(m, 6, lr=0.5, dtype=torch.float64)[0]
    before = [p.detach().clone() for p in ctx.model.parameters()]
    ones = [torch.ones(l.mask.shape, dtype=torch.float64, requires_grad=True) for l in ctx.layers]
    analytic = torch.autograd.grad(meta_loss(ctx, m.config, ones).sum(), ones)
    eps = 1e-6
    for li, l in enumerate(ctx.layers):
        fd = torch.zeros(l.mask.numel(), dtype=torch.float64)
        for i in range(l.mask.numel()):
            vals = []
            for sign in (1, -1):
                c = [t.detach().clone() for t in ones]
                c[li].view(-1)[i] += sign * eps
                vals.append(meta_loss(ctx, m.config, c).sum().item())
            fd[i] = (vals[0] - vals[1]) / (2 * eps)
        assert torch.allclose(analytic[li].flatten(), fd, rtol=1e-5, atol=1e-9)
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.model.parameters()))  # the model is untouched
    scores = m.scores(ctx)
    assert all(torch.allclose(s, a.abs()) for s, a in zip(scores, analytic))
    d = method("prospr", score_batch=8, detach_first_momentum=True)
    detached = torch.autograd.grad(meta_loss(ctx, d.config, ones).sum(), ones)
    assert not all(torch.allclose(a, b, rtol=1e-3) for a, b in zip(detached, analytic))


def test_prospr_scores_match_an_unrolled_computation():
    m = method("prospr", score_batch=16)  # 3 steps, momentum 0.9, the run's weight decay 5e-4
    ctx, params, X, y = plain_ctx(m, widths=(2, 3, 1), target=4, batch_size=16, lr=0.5)
    c = [torch.ones(3, 2, requires_grad=True), torch.ones(1, 3, requires_grad=True)]
    b = [torch.as_tensor(params[0][1]).clone().requires_grad_(True), torch.as_tensor(params[1][1]).clone().requires_grad_(True)]
    p = [torch.as_tensor(params[0][0]) * c[0], b[0], torch.as_tensor(params[1][0]) * c[1], b[1]]
    buf = None
    for i in range(3):
        xb, yb = hand_batch(X, y, 3, i, 16)
        loss = F.binary_cross_entropy_with_logits(hand_forward(xb, p[0::2], p[1::2]), yb)
        g = [gi + 5e-4 * pi for gi, pi in zip(torch.autograd.grad(loss, p, create_graph=True), p)]
        buf = g if buf is None else [0.9 * b + gi for b, gi in zip(buf, g)]
        p = [pi - 0.5 * b for pi, b in zip(p, buf)]
    xb, yb = hand_batch(X, y, 3, 3, 16)
    meta = F.binary_cross_entropy_with_logits(hand_forward(xb, p[0::2], p[1::2]), yb)
    want = torch.autograd.grad(meta, c)
    got = m.scores(ctx)
    assert all(torch.allclose(a[0], b.abs(), rtol=1e-4, atol=1e-8) for a, b in zip(got, want))


# -- replicas ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NEW)
def test_batched_scores_equal_one_by_one(name):
    lrs = [0.05, 0.2]
    m = method(name)
    ctx = batched_ctx(m, [40, 40], seeds=[0, 1], lrs=lrs)
    m.setup(ctx)
    batched = m.scores(ctx)
    X, y = spiral_subset(50)
    for r, (seed, lr) in enumerate(zip([0, 1], lrs)):
        net = plain_mlp(WIDE, init_weights(WIDE, 16, seed))
        layers = prunable_layers(net)
        tr = Trainer(net, layers, X, y, [TrainConfig(lr=lr, epochs=1, seed=seed)])
        c = PruneContext(net, tr, layers, [40], m.config, seeds=[seed], method_name=name, input_shape=(2,))
        m.setup(c)
        for a, b in zip(batched, m.scores(c)):
            assert torch.allclose(a[r], b[0], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", NEW)
def test_exact_budget_per_replica_and_on_a_cnn(name):
    m = method(name)
    targets = [15, 40, 65]
    ctx = batched_ctx(m, targets, seeds=[0, 1, 2])
    run_method(m, ctx)
    assert ctx.weight_nnz().tolist() == targets and check_bias_rule(ctx.layers)
    for l in ctx.layers:
        assert (l.weight().detach()[l.mask == 0] == 0).all()
    cnn, _, _ = _cnn_ctx(m, 9)
    run_method(m, cnn)
    assert cnn.weight_nnz().tolist() == [9]
    assert sum(int((l.weight().detach() != 0).sum()) for l in cnn.layers) <= 9


# -- configs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,params,match", [
    (ForceConfig, {"rounds": 0}, "rounds"), (ForceConfig, {"score_batch": 0}, "score_batch"),
    (IterSNIPConfig, {"score_batch": -3}, "score_batch"), (ProsPrConfig, {"inner_steps": -1}, "inner_steps"),
    (ProsPrConfig, {"inner_momentum": 1.0}, "inner_momentum"), (ProsPrConfig, {"score_batch": 0}, "score_batch"),
    (SNIPConfig, {"reinit": "kaiming"}, "reinit"), (GraSPConfig, {"reinit": ""}, "reinit")])
def test_bad_config_values_are_clear_errors(cls, params, match):
    with pytest.raises(ValueError, match=match):
        cls(**params)


def test_defaults_are_recorded_in_params():
    assert method("force").params() == {"method": "force", "procedure": "at_init", "scope": "global",
                                        "density_scheme": "uniform", "prunable": "all", "rounds": 10,
                                        "score_batch": 128}
    assert method("itersnip").params()["rounds"] == 10
    p = method("prospr").params()
    assert (p["inner_steps"], p["inner_momentum"], p["inner_weight_decay"], p["detach_first_momentum"],
            p["score_batch"], p["rounds"]) == (3, 0.9, True, False, 128, 1)
    # reinit is always recorded; run ids leave it out at none, so SNIP and GraSP rows stored before it keep theirs
    from cubist.store import run_id
    snip = method("snip").params()
    assert set(snip) == {"method", "procedure", "scope", "density_scheme", "prunable", "rounds", "score_batch",
                         "reinit"} and snip["reinit"] == "none"
    row = {"kind": "prune", "method": "snip", "params": snip}
    before = {"kind": "prune", "method": "snip", "params": {k: v for k, v in snip.items() if k != "reinit"}}
    assert run_id(row) == run_id(before)
    xavier = {"kind": "prune", "method": "snip", "params": {**snip, "reinit": "xavier_normal"}}
    assert run_id(xavier) != run_id(before)
    assert method("grasp", reinit="xavier_normal").params()["reinit"] == "xavier_normal"


def test_cli_runs_force_end_to_end(tmp_path, capsys):
    from cubist.cli import main
    from cubist.store import ResultStore
    assert main(["prune", "--method", "prospr", "--inner-momentum", "1.5", "--epochs", "1"]) == 2
    assert "inner_momentum" in capsys.readouterr().err
    assert main(["prune", "--method", "force", "--inner-steps", "2"]) == 2
    assert "does not apply" in capsys.readouterr().err
    out = str(tmp_path / "st")
    assert main(["prune", "--method", "force", "--widths", "3,3,3", "--nnz", "15", "--lrs", "0.1",
                 "--schedules", "constant", "--epochs", "1", "--out", out, "--quiet", "--jobs", "1"]) == 0
    (row,) = ResultStore(out).load().to_dict("records")
    assert row["weight_nnz"] == 15 and row["method"] == "force"
    params = json.loads(row["params"])
    assert params["rounds"] == 10 and params["score_batch"] == 128
    metrics = json.loads(row["metrics"])
    assert metrics["prune_events"] == 10 and "regrown" in metrics


# -- xavier re-initialisation of SNIP and GraSP ------------------------------------------------------
@pytest.mark.parametrize("name", ["snip", "grasp"])
def test_reinit_trains_from_xavier_weights_masked(name):
    seeds, targets = [0, 1], [30, 45]
    m = method(name, reinit="xavier_normal")
    ctx = batched_ctx(m, targets, seeds=seeds)
    init_biases = [l.bias_param.detach().clone() for l in ctx.layers]
    starts = []
    orig = ctx.trainer.train
    ctx.trainer.train = lambda *a, **k: (starts.append([(l.param.detach().clone(), l.bias_param.detach().clone())
                                                         for l in ctx.layers]), orig(*a, **k))
    run_method(m, ctx)
    # the draws a fresh context of the same runs makes: xavier_normal_ per replica, layer by layer
    fresh = batched_ctx(m, targets, seeds=seeds)
    xavier = [torch.empty(len(seeds), *l.shape) for l in fresh.layers]
    for r in range(len(seeds)):
        for w in xavier:
            nn.init.xavier_normal_(w[r], generator=fresh.generator(r))
    (start,) = starts
    for l, (w, b), xw, b0 in zip(ctx.layers, start, xavier, init_biases):
        assert torch.equal(w, xw * l.mask) and torch.equal(b, b0 * l.bias_mask)
    # the masks are the method's masks of the xavier network (scored after the re-init)
    plain = method(name)
    ref = batched_ctx(plain, targets, seeds=seeds)
    with torch.no_grad():
        for l, xw in zip(ref.layers, xavier):
            l.param.copy_(xw)
    ref.trainer.train = lambda *a, **k: None
    run_method(plain, ref)
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(ctx.layers, ref.layers))
    # one replica alone draws the same weights (randomness per replica)
    one = batched_ctx(m, targets[1:], seeds=seeds[1:])
    one.trainer.train = lambda *a, **k: None
    run_method(m, one)
    assert all(torch.equal(xw[1] * a.mask[1], b.param[0]) for xw, a, b in zip(xavier, ctx.layers, one.layers))
