import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cubist
from cubist.train import lr_at, step_milestones


def plain_loop(params, masks, X, y, lr, schedule, epochs, seed, bs=128):
    """Independent reference: nn.Linear layers, torch.optim.SGD and torch's own LR schedulers."""
    layers = []
    for w, b in params:
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layers.append(lin)
    wm = [torch.as_tensor(m, dtype=torch.float32) for m in masks]
    bm = [torch.as_tensor(m, dtype=torch.float32) for m in cubist.bias_masks(masks)]
    with torch.no_grad():
        for lin, a, b in zip(layers, wm, bm):
            lin.weight.mul_(a)
            lin.bias.mul_(b)
    net = torch.nn.Sequential(*sum(([lin, torch.nn.ReLU()] for lin in layers), [])[:-1])
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    elif schedule == "step":
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(step_milestones(epochs)), gamma=0.1)
    else:
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)
    X, y = torch.as_tensor(X), torch.as_tensor(y)
    steps = len(X) // bs
    for epoch in range(epochs):
        perm = torch.as_tensor(cubist.epoch_permutation(seed, epoch, len(X)))
        for s in range(steps):
            idx = perm[s * bs:(s + 1) * bs]
            loss = F.binary_cross_entropy_with_logits(net(X[idx]).squeeze(-1), y[idx])
            opt.zero_grad()
            loss.backward()
            for lin, a, b in zip(layers, wm, bm):
                lin.weight.grad.mul_(a)
                lin.bias.grad.mul_(b)
            opt.step()
        sched.step()
    return [(lin.weight.detach(), lin.bias.detach()) for lin in layers]


@pytest.fixture(scope="module")
def spiral():
    return cubist.make_spiral()


@pytest.mark.parametrize("widths,schedule,lr,density", [
    ((2, 3, 3, 3, 1), "cosine", 0.1, 0.7),
    ((2, 5, 4, 1), "step", 0.05, 0.6),
    ((2, 16, 16, 16, 1), "constant", 0.2, 1.0),
])
def test_reference_equals_plain_loop(spiral, widths, schedule, lr, density):
    X, y = spiral
    rng = np.random.default_rng(0)
    masks = [rng.random((widths[l + 1], widths[l])) < density for l in range(len(widths) - 1)]
    masks[0][:, 0] = True
    params = cubist.init_weights(widths, 16, seed=3)
    model = cubist.MaskedMLP(widths, masks, seed=3)
    cfg = cubist.TrainConfig(lr=lr, schedule=schedule, epochs=2, seed=7)
    res = cubist.train_reference(model, X, y, cfg, device="cpu")
    ref = plain_loop(params, masks, X, y, lr, schedule, 2, seed=7)
    for lin, (w, b) in zip(model.layers, ref):
        torch.testing.assert_close(lin.weight.detach(), w, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(lin.bias.detach(), b, atol=1e-6, rtol=1e-5)
    for lin, m in zip(model.layers, masks):
        assert (lin.weight.detach()[~torch.as_tensor(m)] == 0).all()  # exactly zero
    assert not res.diverged and res.epochs_run == 2
    acc, loss = cubist.evaluate(model, torch.as_tensor(X), torch.as_tensor(y))
    assert res.train_acc == acc and math.isclose(res.final_loss, loss)


def test_masked_weights_stay_zero_with_momentum_and_decay(spiral):
    X, y = spiral
    widths = (2, 4, 4, 1)
    masks = [np.eye(4, 2, dtype=bool), np.eye(4, dtype=bool), np.array([[1, 0, 1, 0]], bool)]
    model = cubist.MaskedMLP(widths, masks, seed=0)
    cubist.train_reference(model, X[:4096], y[:4096], cubist.TrainConfig(epochs=3, lr=0.2), device="cpu")
    for lin, m, bm in zip(model.layers, masks, cubist.bias_masks(masks)):
        assert (lin.weight.detach()[~torch.as_tensor(m)] == 0).all()
        assert (lin.bias.detach()[~torch.as_tensor(bm)] == 0).all()
        assert (lin.weight.detach()[torch.as_tensor(m)] != 0).all()


def test_same_seed_same_result_and_seed_matters(spiral):
    X, y = spiral
    X, y = X[::10], y[::10]
    out = []
    for seed in (1, 1, 2):
        m = cubist.MaskedMLP((2, 6, 6, 1), seed=seed)
        r = cubist.train_reference(m, X, y, cubist.TrainConfig(epochs=2, seed=seed), device="cpu")
        out.append((r.train_acc, r.final_loss, [p.detach().clone() for p in m.parameters()]))
    assert out[0][:2] == out[1][:2]
    assert all(torch.equal(a, b) for a, b in zip(out[0][2], out[1][2]))
    assert not all(torch.equal(a, b) for a, b in zip(out[0][2], out[2][2]))


def test_divergence_is_an_outcome(spiral):
    X, y = spiral
    m = cubist.MaskedMLP((2, 16, 16, 1), seed=0)
    r = cubist.train_reference(m, X[:2048], y[:2048], cubist.TrainConfig(lr=1e6, epochs=3), device="cpu")
    assert r.diverged and r.epochs_run <= 3 and 0 <= r.train_acc <= 1


@pytest.mark.parametrize("schedule", ["cosine", "step", "constant"])
def test_lr_at_matches_torch_schedulers_over_50_epochs(schedule):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = {"cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50),
             "step": lambda: torch.optim.lr_scheduler.MultiStepLR(opt, [15, 30], gamma=0.1),
             "constant": lambda: torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)}[schedule]()
    for epoch in range(50):
        assert lr_at(schedule, 0.1, epoch, 50) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        opt.step()
        sched.step()
    assert step_milestones(50) == (15, 30)


def test_steps_per_epoch_is_390():
    assert 49982 // cubist.TrainConfig().batch_size == 390


def test_heldout_and_device_auto(spiral):
    X, y = spiral
    Xh, yh = cubist.make_heldout()
    m = cubist.MaskedMLP((2, 4, 1), seed=0)
    r = cubist.train_reference(m, X[:1024], y[:1024], cubist.TrainConfig(epochs=1), X_heldout=Xh, y_heldout=yh)
    assert 0 <= r.heldout_acc <= 1


@pytest.mark.parametrize("bad", [dict(lr=-1), dict(schedule="linear"), dict(epochs=0), dict(momentum=1.5)])
def test_bad_config(bad):
    with pytest.raises(ValueError):
        cubist.TrainConfig(**bad)


def test_correct_predictions_counts_non_finite_logits_as_wrong():
    from cubist.train import correct_predictions
    inf, nan = float("inf"), float("nan")
    z = torch.tensor([[2.0, -1.0, 0.0, nan, inf, -inf], [inf, -inf, nan, 0.5, -0.5, 1e30]])
    t = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]])
    want = [[True, True, True, False, False, False], [False, False, False, False, False, True]]
    assert correct_predictions(z, t).tolist() == want   # logit 0 predicts class 0
    classes = torch.tensor([[[3.0, 1.0, 2.0], [0.0, 5.0, nan], [inf, 0.0, 0.0], [1.0, 1.0, -1.0]]])
    labels = torch.tensor([[0, 1, 0, 0]])
    assert correct_predictions(classes, labels).tolist() == [[True, False, False, True]]  # argmax: first of ties
    with pytest.raises(ValueError):
        correct_predictions(torch.zeros(2, 3, 4), torch.zeros(2))


def test_evaluate_counts_by_correct_predictions():
    from cubist.train import correct_predictions
    z = torch.tensor([2.0, -1.0, 0.0, float("nan"), float("inf"), -float("inf"), 0.5, -0.5])
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return z[x[:, 0].long()]
    X = torch.arange(len(z), dtype=torch.float32).unsqueeze(1)
    acc, _ = cubist.evaluate(Fixed(), X, y, chunk=3)
    assert acc == float(correct_predictions(z, y).sum()) / len(z) == 3 / 8


def test_nan_logits_count_as_wrong():
    class NaNModel(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x),), float("nan"))
    acc, loss = cubist.evaluate(NaNModel(), torch.zeros(10, 2), torch.tensor([0.0, 1.0] * 5))
    assert acc == 0.0 and math.isnan(loss)
