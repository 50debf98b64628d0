"""Pruning methods: exact budgets (MLP and CNN), IMP rewinding, LRR, SynFlow by hand, the sweep."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from cubist.train import TrainConfig, lr_at
from pruners import PruneContext, get_method, load_methods
from pruners.layers import BatchedMLP, check_bias_rule, prunable_layers
from pruners.procedures import run_method
from pruners.runner import SweepConfig, run_sweep
from pruners.train import Trainer
from pruner_helpers import SmallCNN, spiral_subset

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTHS = (2, 16, 16, 16, 1)
OWN = ("imp", "lrr", "gmp", "random", "snip", "grasp", "synflow")
FAST = {"imp": {"rate": 0.6}, "lrr": {"rate": 0.6}, "gmp": {"prune_steps": 7}, "synflow": {"rounds": 5},
        "imp+pilot": {"rate": 0.6}, "lrr+pilot": {"rate": 0.6}}


def method(name, **params):
    cls = get_method(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    return cls(cls.Config(**{k: v for k, v in {**FAST.get(name, {}), **params}.items() if k in fields}))


def mlp_ctx(m, targets, seeds, epochs=1, lrs=None, k=50):
    X, y = spiral_subset(k)
    model = BatchedMLP.from_seeds(WIDTHS, seeds)
    layers = prunable_layers(model)
    lrs = lrs or [0.1] * len(seeds)
    cfgs = [TrainConfig(lr=lr, epochs=epochs, seed=s) for s, lr in zip(seeds, lrs)]
    tr = Trainer(model, layers, X, y, cfgs)
    return PruneContext(model, tr, layers, targets, m.config, seeds=seeds, method_name=m.name, input_shape=(2,))


def all_methods():
    return sorted(load_methods())


# -- budgets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", all_methods())
def test_budget_exact_per_replica_mlp(name):
    m = method(name)
    targets = [40, 50, 65]  # equal IMP/LRR round counts at rate 0.6 (the runner groups by rounds)
    ctx = mlp_ctx(m, targets, seeds=[0, 1, 2])
    run_method(m, ctx)
    assert ctx.weight_nnz().tolist() == targets
    masks = [l.mask for l in ctx.layers]
    for l, mk in zip(ctx.layers, masks):
        assert (l.weight().detach()[mk == 0] == 0).all()
    assert check_bias_rule(ctx.layers)


@pytest.mark.parametrize("name", all_methods())
def test_budget_exact_on_cnn(name):
    torch.manual_seed(0)
    net = SmallCNN()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 1, 6, 6, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    m = method(name)
    layers = prunable_layers(net)
    tr = Trainer(net, layers, X, y, [TrainConfig(lr=0.05, epochs=1, batch_size=16, seed=0)], loss="ce")
    target = 60
    ctx = PruneContext(net, tr, layers, [target], m.config, seeds=[0], method_name=name, input_shape=(1, 6, 6))
    run_method(m, ctx)
    assert ctx.weight_nnz().tolist() == [target]
    assert sum(int((l.weight().detach() != 0).sum()) for l in layers) <= target


@pytest.mark.parametrize("scheme", ["uniform", "er", "erk", "balanced", "pyramidal"])
def test_random_layer_counts_follow_scheme(scheme):
    from pruners import density
    m = method("random", density_scheme=scheme)
    ctx = mlp_ctx(m, [30, 65], seeds=[0, 1])
    ctx.trainer.epochs = 1
    from pruners.procedures import _prune
    _prune(m, ctx, ctx.budgets().numpy())
    want = density.layer_counts(scheme, [l.shape for l in ctx.layers], [30, 65])
    got = np.stack([[int(l.mask[r].sum()) for l in ctx.layers] for r in range(2)])
    assert (got == want).all()


def test_random_flow_repair_connects_every_unit():
    m = method("random", flow_repair=True, density_scheme="uniform")
    ctx = mlp_ctx(m, [100, 120], seeds=[0, 1])  # >= 64 weights can connect every unit
    from pruners.procedures import _prune
    _prune(m, ctx, ctx.budgets().numpy())
    assert ctx.weight_nnz().tolist() == [100, 120]
    for l in ctx.layers:
        mk = l.mask != 0
        assert mk.any(-1).all() and mk.any(-2).all()


# -- IMP and LRR -----------------------------------------------------------------------------
def _spy_training(ctx, record_step=None):
    """Wrap the trainer: record state at the start of every training call (and at a step)."""
    tr = ctx.trainer
    calls, at_step = [], {}
    orig = tr.train

    def train(epochs=None, **kw):
        state = {k: v.detach().clone() for k, v in tr.model.named_parameters()}
        bufs = {k: (None if tr.momentum_buffer(p) is None else tr.momentum_buffer(p).clone())
                for k, p in tr.model.named_parameters()}
        masks = [l.mask.clone() for l in ctx.layers]
        calls.append({"state": state, "bufs": bufs, "masks": masks, "opt": tr.optimizer,
                      "bias_masks": [l.bias_mask.clone() for l in ctx.layers],
                      "opt_state": len(tr.optimizer.state)})
        user = kw.pop("after_step", None)
        start = tr.step_counter

        def step(k):
            if record_step is not None and k - start == record_step and "state" not in at_step:
                at_step["state"] = {n: v.detach().clone() for n, v in tr.model.named_parameters()}
            if user is not None:
                user(k)
        orig(epochs, after_step=step, **kw)
        calls[-1]["end"] = {k: v.detach().clone() for k, v in tr.model.named_parameters()}
        calls[-1]["end_bufs"] = {k: (None if tr.momentum_buffer(p) is None else tr.momentum_buffer(p).clone())
                                 for k, p in tr.model.named_parameters()}
    tr.train = train
    lrs_seen = []
    orig_lrs = tr.lrs

    def lrs(epoch, epochs):
        lrs_seen.append((epoch, epochs))
        return orig_lrs(epoch, epochs)
    tr.lrs = lrs
    return calls, at_step, lrs_seen


@pytest.mark.parametrize("rewind_step", [None, 5])
def test_imp_rewinds_survivors_and_resets_optimizer(rewind_step):
    params = {"rewind": "init"} if rewind_step is None else {"rewind": "step", "rewind_step": rewind_step}
    m = method("imp", **params)
    ctx = mlp_ctx(m, [40, 60], seeds=[0, 1])
    init = {k: v.detach().clone() for k, v in ctx.model.named_parameters()}
    calls, at_step, _ = _spy_training(ctx, record_step=rewind_step)
    run_method(m, ctx)
    assert len(calls) >= 3 and ctx.weight_nnz().tolist() == [40, 60]
    ref = init if rewind_step is None else at_step["state"]
    for c in calls[1:]:
        assert c["opt_state"] == 0 and c["opt"] is not calls[0]["opt"]  # fresh optimiser
        for i, layer in enumerate(ctx.model.layers):
            mk = c["masks"][i]
            w = c["state"][f"layers.{i}.weight"]
            assert torch.equal(w, ref[f"layers.{i}.weight"] * mk)  # survivors exactly at init / step k
            assert (w[mk == 0] == 0).all()


def test_lrr_keeps_weights_and_momentum_and_restarts_lr():
    m = method("lrr")
    ctx = mlp_ctx(m, [40, 60], seeds=[0, 1], epochs=2, lrs=[0.05, 0.1])
    calls, _, lrs_seen = _spy_training(ctx)
    ctx.trainer.configs = [dataclasses.replace(c, schedule="cosine") for c in ctx.trainer.configs]
    run_method(m, ctx)
    assert len(calls) >= 3
    for prev, cur in zip(calls, calls[1:]):
        assert cur["opt"] is prev["opt"]  # same optimiser: momentum kept
        for i in range(4):
            mk = cur["masks"][i]
            name = f"layers.{i}.weight"
            assert torch.equal(cur["state"][name], prev["end"][name] * mk)
            assert torch.equal(cur["bufs"][name], prev["end_bufs"][name] * mk)
            bias = f"layers.{i}.bias"
            assert torch.equal(cur["state"][bias], prev["end"][bias] * cur["bias_masks"][i])
    # every training call restarts the LR schedule at epoch 0 of its own length
    assert lrs_seen == [(e, 2) for _ in calls for e in range(2)]
    assert float(ctx.trainer.lrs(0, 2)[1]) == pytest.approx(lr_at("cosine", 0.1, 0, 2))


# -- SynFlow by hand ---------------------------------------------------------------------------
def test_synflow_scores_match_hand_computation():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    W1 = torch.tensor([[1.0, -2.0], [-0.5, 3.0]])
    b1 = torch.tensor([-1.0, 0.5])
    W2 = torch.tensor([[-2.0, 4.0]])
    b2 = torch.tensor([0.3])
    with torch.no_grad():
        net[0].weight.copy_(W1); net[0].bias.copy_(b1); net[2].weight.copy_(W2); net[2].bias.copy_(b2)
    layers = prunable_layers(net)
    m = method("synflow", rounds=1)
    X = torch.zeros(8, 2)
    tr = Trainer(net, layers, X, torch.zeros(8), [TrainConfig(epochs=1, batch_size=4, seed=0)])
    ctx = PruneContext(net, tr, layers, [3], m.config, seeds=[0], method_name="synflow", input_shape=(2,))
    s1, s2 = m.scores(ctx)
    # R = |W2| (|W1| 1 + |b1|) + |b2|: dR/dW1[j, i] = |W2[j]|, dR/dW2[j] = h_j = sum_i |W1[j, i]| + |b1[j]|
    h = W1.abs().sum(1) + b1.abs()
    want1 = W1.abs() * W2.abs().T
    want2 = W2.abs() * h
    assert torch.allclose(s1[0], want1) and torch.allclose(s2[0], want2)
    assert torch.equal(net[0].weight_orig, W1) and torch.equal(net[0].bias_orig, b1)  # signs restored


def test_synflow_batched_equals_plain():
    m = method("synflow", rounds=1)
    ctx = mlp_ctx(m, [40, 40], seeds=[0, 1])
    batched = m.scores(ctx)
    from cubist.model import init_weights
    from pruners.layers import plain_mlp
    for r, seed in enumerate([0, 1]):
        net = plain_mlp(WIDTHS, init_weights(WIDTHS, 16, seed))
        layers = prunable_layers(net)
        tr = Trainer(net, layers, torch.zeros(8, 2), torch.zeros(8), [TrainConfig(epochs=1, batch_size=4, seed=seed)])
        c = PruneContext(net, tr, layers, [40], m.config, seeds=[seed], method_name="synflow", input_shape=(2,))
        for a, b in zip(batched, m.scores(c)):
            assert torch.allclose(a[r], b[0], rtol=1e-5)


# -- the sweep: batched equals one by one ----------------------------------------------------------
@pytest.mark.parametrize("name", ["gmp", "snip", "lrr"])
def test_batched_sweep_equals_runs_one_by_one(name):
    cfg = dict(method=name, method_params=FAST.get(name, {}), nnz=(20, 40), lrs=(0.05, 0.2),
               schedules=("cosine", "step"), seeds=2, epochs=2, subsample=50, device="cpu")
    batched = run_sweep(SweepConfig(**cfg))
    single = run_sweep(SweepConfig(**cfg, engine="single"))
    assert len(batched) == len(single) == 16
    by_id = {r["run_id"]: r for r in single}
    for b in batched:
        s = by_id[b["run_id"]]
        assert b["engine"] == "torch-batched" and s["engine"] == "torch-single"
        assert b["weight_nnz"] == s["weight_nnz"] == b["target_nnz"]
        assert b["mask_bits"] == s["mask_bits"]
        assert abs(b["final_loss"] - s["final_loss"]) < 1e-4 and abs(b["train_acc"] - s["train_acc"]) < 1e-3
        wb = np.frombuffer(b["weights"], "<f4")
        ws = np.frombuffer(s["weights"], "<f4")
        assert np.allclose(wb, ws, atol=1e-4)


def test_sweep_rows_resume_and_store(tmp_path):
    from cubist.store import ResultStore, row_masks
    cfg = SweepConfig(method="random", nnz=(25,), lrs=(0.1,), schedules=("constant",), seeds=2, epochs=1,
                      subsample=50, device="cpu")
    store = ResultStore(str(tmp_path / "st"))
    rows = run_sweep(cfg, store=store)
    assert len(rows) == 2 and len(store.done()) == 2
    assert run_sweep(cfg, store=store) == []  # resumed: nothing left
    df = store.load()
    row = df.iloc[0]
    assert row["kind"] == "prune" and row["method"] == "random" and row["target_nnz"] == 25
    assert sum(int(m.sum()) for m in row_masks(row)) == 25 == row["weight_nnz"]
    assert '"density_scheme":"erk"' in row["params"] and row["engine"] == "torch-batched"
    assert row["effective_nnz"] <= 25 and row["heldout_acc"] is not None


def test_cli_errors_and_run(tmp_path, capsys):
    from cubist.cli import main
    assert main(["prune", "--method", "gmp", "--rewind-step", "3"]) == 2
    assert "does not apply" in capsys.readouterr().err
    assert main(["prune", "--method", "gmp", "--nnz", "999"]) == 2
    assert main(["prune", "--method", "nope"]) == 2
    assert main(["prune", "--method", "gmp", "--prunable", "hidden", "--nnz", "10"]) == 2
    assert main(["prune", "--method", "imp", "--rewind", "step", "--rewind-step", "99999", "--epochs", "1",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "dense last layer" in err and "rewind_step" in err and len(err.strip().splitlines()) == 4
    out = str(tmp_path / "st")
    args = ["prune", "--method", "synflow", "--rounds", "3", "--widths", "3,3,3", "--nnz", "15", "--lrs", "0.1",
            "--schedules", "constant", "--epochs", "1", "--out", out, "--quiet", "--jobs", "1"]
    assert main(args) == 0
    from cubist.store import ResultStore
    df = ResultStore(out).load()
    assert len(df) == 1 and df.iloc[0]["weight_nnz"] == 15 and list(df.iloc[0]["widths"]) == [2, 3, 3, 3, 1]


def test_imp_fixed_cycles_mixes_targets_in_one_chunk():
    m = method("imp", cycles=3)
    ctx = mlp_ctx(m, [15, 40, 65], seeds=[0, 1, 2])
    calls, _, _ = _spy_training(ctx)
    run_method(m, ctx)
    assert ctx.weight_nnz().tolist() == [15, 40, 65]
    assert len(calls) == 4 and ctx.extra[0]["rounds"] == 3
    # geometric targets N (F/N)^(k/3) before the last round
    n1 = [int(c.sum()) for c in [sum(mk[r].sum() for mk in calls[1]["masks"]) for r in range(3)]]
    assert n1 == [round(560 * (f / 560) ** (1 / 3)) for f in (15, 40, 65)]


def test_grasp_and_snip_scores_match_explicit_hessian():
    from cubist.model import init_weights
    from pruners.layers import plain_mlp
    widths = (2, 3, 1)
    params = init_weights(widths, None, 4)
    net = plain_mlp(widths, params)
    layers = prunable_layers(net)
    X, y = spiral_subset(50)
    tr = Trainer(net, layers, X, y, [TrainConfig(epochs=1, batch_size=16, seed=2)])
    grasp, snip = method("grasp", score_batch=16, temperature=7.0), method("snip", score_batch=16)
    ctx = PruneContext(net, tr, layers, [5], grasp.config, seeds=[2], method_name="grasp", input_shape=(2,))
    x, t = ctx.batch(16)
    b1, b2 = torch.as_tensor(params[0][1]), torch.as_tensor(params[1][1])

    def loss(w1, w2, T):
        z = (torch.relu(x[0] @ w1.T + b1) @ w2.T + b2).squeeze(-1) / T
        return nn.functional.binary_cross_entropy_with_logits(z, t[0])

    w = (torch.as_tensor(params[0][0]), torch.as_tensor(params[1][0]))
    flat = torch.cat([v.flatten() for v in w])

    def f(v, T):
        return loss(v[:6].view(3, 2), v[6:].view(1, 3), T)
    g = torch.autograd.functional.jacobian(lambda v: f(v, 7.0), flat)
    H = torch.autograd.functional.hessian(lambda v: f(v, 7.0), flat)
    want = flat * (H @ g)
    got = torch.cat([s[0].flatten() for s in grasp.scores(ctx)])
    assert torch.allclose(got, want, atol=1e-7, rtol=1e-4)
    g1 = torch.autograd.functional.jacobian(lambda v: f(v, 1.0), flat)
    got = torch.cat([s[0].flatten() for s in snip.scores(ctx)])
    assert torch.allclose(got, (flat * g1).abs(), atol=1e-7, rtol=1e-5)


def test_row_turns_back_into_its_run():
    from pruners.runner import rerun
    cfg = SweepConfig(method="imp", method_params={"rate": 0.5, "rewind": "step", "rewind_step": 3}, nnz=(60,),
                      lrs=(0.1,), schedules=("step",), seeds=2, epochs=1, subsample=50, device="cpu")
    row = run_sweep(cfg)[1]
    again = rerun(row, engine="single")
    assert again["run_id"] == row["run_id"] and again["mask_bits"] == row["mask_bits"]
    assert abs(again["final_loss"] - row["final_loss"]) < 1e-4


@pytest.mark.slow
def test_worker_processes_give_the_same_rows():
    cfg = SweepConfig(method="gmp", method_params={"prune_steps": 5}, nnz=(20, 40), lrs=(0.1,),
                      schedules=("cosine", "step"), seeds=1, epochs=1, subsample=50, device="cpu")
    one = {r["run_id"]: r for r in run_sweep(cfg)}
    two = run_sweep(cfg, jobs=2)
    assert sorted(one) == sorted(r["run_id"] for r in two)
    for r in two:
        assert r["mask_bits"] == one[r["run_id"]]["mask_bits"]
        assert abs(r["final_loss"] - one[r["run_id"]]["final_loss"]) < 1e-5


def test_rewind_step_flag_implies_weight_rewinding():
    from pruners.methods import IMPConfig, LRRConfig
    assert IMPConfig(rewind_step=5).rewind == "step" and IMPConfig().rewind == "init"
    with pytest.raises(ValueError):
        IMPConfig(rewind="lr")
    with pytest.raises(ValueError):
        LRRConfig(rewind_step=3)
