"""Pruning framework: exact top-k, apportioning, density schemes, schedules, masking, per-replica SGD."""
import numpy as np
import pytest
import torch
from torch import nn

from cubist.model import init_weights
from cubist.train import TrainConfig
from pruners import density, schedules
from pruners.layers import BatchedMLP, check_bias_rule, plain_mlp, prunable_layers
from pruners.masking import apportion, flow_repair, topk_keep
from pruners.optim import ReplicaSGD
from pruners.train import Trainer
from pruner_helpers import spiral_subset

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTHS = (2, 16, 16, 16, 1)
SHAPES = [(16, 2), (16, 16), (16, 16), (1, 16)]


# -- top-k and apportioning ------------------------------------------------------------------
def test_topk_exact_per_replica_and_respects_current_mask():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 50, generator=g)
    current = torch.rand(3, 50, generator=g) > 0.3
    k = torch.tensor([5, 0, 20])
    keep = topk_keep(scores, current, k)
    assert keep.sum(1).tolist() == [5, 0, 20]
    assert not (keep & ~current).any()
    for r in range(3):  # the kept ones are the best surviving
        alive = scores[r][current[r]]
        if k[r]:
            assert scores[r][keep[r]].min() >= alive.sort(descending=True).values[k[r] - 1]


def test_topk_ties_nan_and_pruned_stay_pruned():
    scores = torch.tensor([[1.0, 1.0, float("nan"), 5.0, 1.0, 9.0]])
    current = torch.tensor([[True, True, True, True, True, False]])
    keep = topk_keep(scores, current, torch.tensor([3]))
    assert keep.tolist() == [[True, True, False, True, False, False]]  # ties by position, 9.0 was pruned
    keep = topk_keep(scores, current, torch.tensor([5]))  # NaN ranks lowest but still before pruned
    assert keep.tolist() == [[True, True, True, True, True, False]]
    with pytest.raises(ValueError):
        topk_keep(scores, current, torch.tensor([6]))


def test_apportion_exact_with_caps():
    out = apportion([1.0, 1.0, 1.0], [10, 7, 2], caps=[2, 100, 100])
    assert out.sum(1).tolist() == [10, 7, 2]
    assert (out[:, 0] <= 2).all()
    assert out[0].tolist() == [2, 4, 4]


# -- density schemes ---------------------------------------------------------------------------
def test_uniform_and_er():
    p = density.densities("uniform", SHAPES, 0.3)
    assert np.allclose(p, 0.3)
    conv = [(8, 4, 3, 3), (16, 8, 3, 3), (10, 16)]
    er, erk = density.densities("er", conv, 0.2), density.densities("erk", conv, 0.2)
    n = np.array([np.prod(s) for s in conv])
    assert np.isclose((er * n).sum(), 0.2 * n.sum()) and np.isclose((erk * n).sum(), 0.2 * n.sum())
    # ER ignores kernel dims, ERK does not: ratios between layers follow the formulas
    assert np.isclose(er[0] / er[1], ((8 + 4) / n[0]) / ((16 + 8) / n[1]))
    assert np.isclose(erk[0] / erk[1], ((8 + 4 + 3 + 3) / n[0]) / ((16 + 8 + 3 + 3) / n[1]))


def test_erk_total_and_dense_layers_resolved():
    d = 0.5
    p = density.densities("erk", SHAPES, d)
    n = np.array([np.prod(s) for s in SHAPES], dtype=float)
    assert np.isclose((p * n).sum(), d * n.sum())
    # raw counts ∝ (out + in): 18, 32, 32, 17 -> the first and the last layer exceed 1: dense
    assert p[0] == 1.0 and p[3] == 1.0
    assert np.isclose(p[1], (d * n.sum() - 32 - 16) / 512) and np.isclose(p[1], p[2])
    assert (p <= 1 + 1e-12).all()


def test_balanced_equal_counts_and_cap():
    n = np.array([np.prod(s) for s in SHAPES], dtype=float)
    p = density.densities("balanced", SHAPES, 40 / n.sum())
    assert np.allclose(p * n, 10)
    p = density.densities("balanced", SHAPES, 200 / n.sum())  # 50 each would exceed 32 and 16
    counts = p * n
    assert np.isclose(counts.sum(), 200) and counts[0] == 32 and counts[3] == 16
    assert np.isclose(counts[1], counts[2])


def test_pyramidal_root():
    n = np.array([np.prod(s) for s in SHAPES], dtype=float)
    for d in (0.05, 0.3, 0.9):
        p = density.densities("pyramidal", SHAPES, d)
        r = p[0]
        assert 0 < r <= 1
        assert np.allclose(p, r ** np.arange(1, 5))
        assert np.isclose((n * r ** np.arange(1, 5)).sum(), d * n.sum(), rtol=1e-10)


@pytest.mark.parametrize("scheme", density.SCHEMES)
def test_layer_counts_exact(scheme):
    budgets = np.array([15, 40, 65, 300, 560])
    counts = density.layer_counts(scheme, SHAPES, budgets)
    assert counts.sum(1).tolist() == budgets.tolist()
    assert (counts <= np.array([32, 256, 256, 16])).all() and (counts >= 0).all()


# -- schedules ---------------------------------------------------------------------------------
def test_schedules():
    c = schedules.cubic(560, [15, 65], 200)
    assert c.shape == (200, 2) and c[-1].tolist() == [15, 65]
    t = 50
    assert c[t - 1, 0] == int(np.ceil(15 + (560 - 15) * (1 - t / 200) ** 3 - 1e-9))
    assert (np.diff(c, axis=0) <= 0).all()
    g = schedules.geometric(560, [40], 0.2)
    assert g[-1, 0] == 40 and g[0, 0] == 448 and len(g) == schedules.geometric_rounds(560, 40, 0.2)
    assert g[-2, 0] > 40
    e = schedules.exponential(560, [20], 100)
    assert e[-1, 0] == 20 and (np.diff(e[:, 0]) <= 0).all()
    steps = schedules.event_steps(19500, 200, 0.0, 0.6)
    assert len(set(steps.tolist())) == 200 and steps[-1] == 11700


# -- layers and masking ----------------------------------------------------------------------
def test_flow_repair_keeps_counts_and_connects():
    g = torch.Generator().manual_seed(3)
    masks = [torch.zeros(2, *s, dtype=torch.bool) for s in SHAPES]
    masks[1][:, 0, 0] = True
    masks[1][:, 1, 1] = True
    masks[2][:, :4, :4] = True
    masks[0][:, :, 0] = True
    counts = torch.tensor([sum(int(m[r].sum()) for m in masks) for r in range(2)])
    repaired = flow_repair(masks, counts, lambda r: g)
    for r in range(2):
        assert sum(int(m[r].sum()) for m in repaired) == int(counts[r])


def test_batched_mlp_matches_plain_forward():
    seeds = [0, 3]
    model = BatchedMLP.from_seeds(WIDTHS, seeds)
    x = torch.randn(5, 2)
    out = model(x)
    for r, s in enumerate(seeds):
        ref = plain_mlp(WIDTHS, init_weights(WIDTHS, 16, s))(x).squeeze(-1)
        assert torch.allclose(out[r], ref, atol=1e-6)


def test_masked_weights_stay_zero_under_momentum_and_decay():
    X, y = spiral_subset(25)
    for model in (BatchedMLP.from_seeds(WIDTHS, [0, 1]), plain_mlp(WIDTHS, init_weights(WIDTHS, 16, 0))):
        layers = prunable_layers(model)
        R = layers[0].R
        g = torch.Generator().manual_seed(0)
        for l in layers:
            l.mask.copy_((torch.rand(l.mask.shape, generator=g) > 0.5).float())
        from pruners.layers import update_bias_masks
        update_bias_masks(layers)
        # masked entries start non-zero and with momentum: they must be zero after training
        cfgs = [TrainConfig(lr=0.2, epochs=2, seed=s, weight_decay=0.05) for s in range(R)]
        tr = Trainer(model, layers, X, y, cfgs)
        tr.train()
        for l in layers:
            assert (l.rview(l.param.detach())[l.mask == 0] == 0).all()
            assert (l.rview(l.param.detach())[l.mask != 0] != 0).all()
            assert (l.rview(l.bias_param.detach())[l.bias_mask == 0] == 0).all()
        assert check_bias_rule(layers)


def test_plain_cnn_is_maskable():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    layers = prunable_layers(net)
    assert [l.R for l in layers] == [1, 1] and layers[0].shape == (3, 1, 3, 3)
    layers[0].mask.zero_()
    out = net(torch.randn(4, 1, 6, 6))
    assert out.shape == (4, 2)
    assert torch.allclose(out, out[:1].expand(4, 2))  # conv weights masked out: output ignores the input


# -- per-replica SGD ----------------------------------------------------------------------------
def test_replica_sgd_equals_torch_sgd_per_run():
    seeds, lrs = [0, 1, 2], [0.05, 0.1, 0.2]
    model = BatchedMLP.from_seeds(WIDTHS, seeds)
    opt = ReplicaSGD(model.parameters(), 3, momentum=0.9, weight_decay=5e-4)
    plains = [plain_mlp(WIDTHS, init_weights(WIDTHS, 16, s)) for s in seeds]
    popts = [torch.optim.SGD(p.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4) for p, lr in zip(plains, lrs)]
    g = torch.Generator().manual_seed(1)
    lr_t = torch.tensor(lrs)
    for step in range(6):
        x = torch.randn(3, 32, 2, generator=g)
        y = (torch.rand(3, 32, generator=g) > 0.5).float()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y, reduction="none").mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step(lr_t)
        for r, (p, po) in enumerate(zip(plains, popts)):
            lp = nn.functional.binary_cross_entropy_with_logits(p(x[r]).squeeze(-1), y[r])
            po.zero_grad()
            lp.backward()
            po.step()
    for r, p in enumerate(plains):
        lins = [m for m in p if isinstance(m, nn.Linear)]
        for bl, pl in zip(model.layers, lins):
            assert torch.allclose(bl.weight[r], pl.weight, atol=1e-6, rtol=1e-5)
            assert torch.allclose(bl.bias[r], pl.bias, atol=1e-6, rtol=1e-5)


def test_batched_trainer_equals_reference_trainer():
    """The batched protocol is cubist.train.train_reference's, replica by replica (with a mask)."""
    from cubist.model import MaskedMLP
    from cubist.train import train_reference
    X, y = spiral_subset(50)
    seeds, lrs, scheds = [0, 1], [0.1, 0.2], ["step", "cosine"]
    g = np.random.default_rng(0)
    masks = [[g.random(s) > 0.4 for s in SHAPES] for _ in seeds]
    model = BatchedMLP.from_seeds(WIDTHS, seeds)
    layers = prunable_layers(model)
    for l, i in zip(layers, range(4)):
        l.mask.copy_(torch.as_tensor(np.stack([m[i] for m in masks])).float())
    from pruners.layers import update_bias_masks
    update_bias_masks(layers)
    for l in layers:
        l.zero_masked_()
    cfgs = [TrainConfig(lr=lr, schedule=sc, epochs=3, seed=s) for s, lr, sc in zip(seeds, lrs, scheds)]
    tr = Trainer(model, layers, X, y, cfgs)
    tr.train()
    for r, cfg in enumerate(cfgs):
        ref = MaskedMLP(WIDTHS, masks[r], seed=cfg.seed)
        train_reference(ref, X, y, cfg, device="cpu")
        for (w, b), (wr, br) in zip(model.replica_params(r), ref.weights_numpy()):
            assert np.allclose(w, wr, atol=1e-5) and np.allclose(b, br, atol=1e-5)


def test_sparsity_report_and_overlap():
    from pruners import mask_overlap, sparsity_report
    a = [torch.tensor([[[1, 0], [1, 1]], [[0, 0], [0, 1]]]), torch.tensor([[[1, 1]], [[0, 1]]])]
    b = [torch.tensor([[[1, 0], [0, 1]], [[1, 0], [0, 1]]]), torch.tensor([[[1, 1]], [[0, 0]]])]
    rep = sparsity_report(a)
    assert [r["weight_nnz"] for r in rep] == [5, 2] and rep[0]["layers"][1]["nnz"] == 2
    assert np.isclose(rep[1]["density"], 2 / 6)
    assert mask_overlap(a, b).tolist() == [4 / 5, 1 / 3]


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_trainer_counts_by_correct_predictions(loss):
    """Trainer accuracy is :func:`cubist.train.correct_predictions`: non-finite logits are wrong."""
    from cubist.train import correct_predictions
    x = torch.tensor([2.0, -1.0, 0.0, float("nan"), float("inf"), -float("inf"), 0.5, -0.5]).unsqueeze(1)
    net = nn.Sequential(nn.Linear(1, 1 if loss == "bce" else 3))
    with torch.no_grad():   # logits: x (bce) or (x, -x, 0) (ce)
        net[0].weight.copy_(torch.tensor([[1.0]]) if loss == "bce" else torch.tensor([[1.0], [-1.0], [0.0]]))
        net[0].bias.zero_()
    y = (torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]) if loss == "bce"
         else torch.tensor([0, 1, 0, 0, 0, 1, 2, 1]))
    tr = Trainer(net, prunable_layers(net), x, y, [TrainConfig(epochs=1, batch_size=4, seed=0)], loss=loss)
    acc, _ = tr.evaluate(x, y, chunk=3)
    with torch.no_grad():
        want = correct_predictions(net(x).squeeze(-1) if loss == "bce" else net(x), y).double().mean()
    assert acc.tolist() == [want.item()] and want.item() == (3 / 8 if loss == "bce" else 4 / 8)
