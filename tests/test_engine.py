"""The numba engine against plain PyTorch: its kernels one by one, and whole trainings against
``cubist.train.train_reference`` (same init, mask and seed).

Both are float32 with different summation orders, so they agree to rounding (~1e-7) step by
step. The configurations are ones where training does not amplify rounding: a wide net at a
large learning rate can be chaotic (a (2,16,16,16,1) net at lr 0.1 ends two epochs ~0.6 apart
from the *reference itself* started with one init weight changed by 1e-7), and then no float32
reimplementation can agree to 1e-4.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cubist.masks import bias_masks
from cubist.model import MaskedMLP, init_weights
from cubist.spiral import make_heldout, make_spiral
from cubist.train import TrainConfig, evaluate, train_reference
from search import engine
from search.engine import train_masks

U64 = np.uint64


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The reference trainer's tiny ops are fastest on one thread (and robust on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def spiral():
    return make_spiral()


@pytest.fixture(scope="module")
def subset(spiral):
    X, y = spiral
    idx = np.random.default_rng(7).choice(len(X), 3000, replace=False)
    return X[idx], y[idx]


def random_masks(widths, R, rng, density=0.6, eligible=True):
    """(R, out, in) masks; hidden layers random (no empty row or column if eligible), output dense."""
    out = []
    for l in range(len(widths) - 1):
        shape = (widths[l + 1], widths[l])
        if l == len(widths) - 2:
            out.append(np.ones((R,) + shape, bool))
            continue
        m = rng.random((R,) + shape) < density
        for r in range(R):
            while eligible and not (m[r].any(0).all() and m[r].any(1).all()):
                m[r] = rng.random(shape) < density
        out.append(m)
    return out


def reference(widths, masks, r, X, y, lr, schedule, seed, epochs, params=None):
    model = MaskedMLP(widths, [m[r] for m in masks], seed=seed, params=params)
    res = train_reference(model, X, y, TrainConfig(lr=lr, schedule=schedule, epochs=epochs, seed=seed),
                          device="cpu")
    return model, res


def max_weight_error(model, res, r):
    return max(max(np.abs(W - res.weights[l][0][r]).max(), np.abs(b - res.weights[l][1][r]).max())
               for l, (W, b) in enumerate(model.weights_numpy()))


# -- kernels against a plain PyTorch step ------------------------------------------------------
def pack_one(widths, masks, seed, B):
    params = [(w.numpy()[None], b.numpy()[None]) for w, b in init_weights(widths, 16, seed)]
    return engine._pack(widths, [m[None] for m in masks], params, B)


def kernel_args(p):
    U = sum(p.widths)
    return U, p.rowptr.ravel(), p.colptr.ravel(), p.b.ravel(), p.bmask.ravel()


@pytest.mark.parametrize("widths", [(2, 3, 3, 3, 1), (2, 7, 3, 1), (2, 6, 6, 1)])
def test_forward_kernel_matches_torch(widths):
    rng = np.random.default_rng(1)
    masks = [m[0] for m in random_masks(widths, 1, rng)]
    B = 128
    p = pack_one(widths, masks, seed=3, B=B)
    U, rp, _, b, _ = kernel_args(p)
    x = rng.standard_normal((B, widths[0])).astype(np.float32)
    A = np.zeros(U * B, np.float32)
    A[: widths[0] * B] = x.T.ravel()
    engine._forward(A, rp, U64(0), p.coff, p.w, b, U64(0), U64(widths[0]), U64(U), U64(B))
    with torch.no_grad():
        z = MaskedMLP(widths, masks, seed=3)(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(A[(U - 1) * B:], z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("widths,dead", [((2, 3, 3, 3, 1), False), ((2, 7, 3, 1), False), ((2, 6, 6, 1), False),
                                         ((2, 4, 3, 1), True)])
def test_step_kernel_matches_torch(widths, dead):
    """One forward + backward + SGD step of the kernels equals torch.optim.SGD on MaskedMLP."""
    rng = np.random.default_rng(2)
    masks = [m[0] for m in random_masks(widths, 1, rng)]
    if dead:  # hidden unit 0 of layer 1 has no outgoing weight, unit 1 of layer 2 no incoming one
        masks[1][:, 0] = False
        masks[1][1, :] = False
    B = 128
    lr, mom, wd = 0.3, 0.9, 5e-4
    p = pack_one(widths, masks, seed=5, B=B)
    U, rp, cp, b, bm = kernel_args(p)
    wbuf, bbuf = np.zeros_like(p.w), np.zeros_like(b)
    model = MaskedMLP(widths, masks, seed=5)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    for _ in range(3):  # three steps: the momentum buffers matter
        x = rng.standard_normal((B, widths[0])).astype(np.float32)
        t = (rng.random(B) < 0.5).astype(np.float32)
        A, D = np.zeros(U * B, np.float32), np.zeros(U * B, np.float32)
        A[: widths[0] * B] = x.T.ravel()
        engine._forward(A, rp, U64(0), p.coff, p.w, b, U64(0), U64(widths[0]), U64(U), U64(B))
        engine._backward(A, D, t, U64(0), cp, U64(0), p.roff, p.widx, p.w, wbuf, b, bbuf, bm, U64(0), U64(U),
                         U64(B), np.float32(lr), np.float32(mom), np.float32(wd))
        loss = F.binary_cross_entropy_with_logits(model(torch.as_tensor(x)), torch.as_tensor(t))
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.apply_masks_()
    p.b = b.reshape(1, U)
    for (W, bias), (We, be) in zip(model.weights_numpy(), engine._unpack(p)):
        np.testing.assert_allclose(We[0], W, atol=1e-6)
        np.testing.assert_allclose(be[0], bias, atol=1e-6)


def test_exp_and_bce_kernels():
    z = np.concatenate([np.linspace(-100, 100, 20001), [0.0, -1e-30, 1e-30]]).astype(np.float32)
    e = np.array([engine._expf(np.float32(v)) for v in np.clip(z, -87, 80)], np.float64)
    ref = np.exp(np.clip(z, -87, 80).astype(np.float64))
    assert np.max(np.abs(e / ref - 1)) < 3e-7
    for t in (0.0, 1.0):
        got = np.array([engine._bce(np.float32(v), np.float32(t)) for v in z], np.float64)
        want = F.binary_cross_entropy_with_logits(torch.as_tensor(z, dtype=torch.float64),
                                                  torch.full((len(z),), t, dtype=torch.float64),
                                                  reduction="none").numpy()
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    assert np.isnan(engine._bce(np.float32("nan"), np.float32(1.0)))


# -- whole trainings against train_reference ---------------------------------------------------
CASES = [  # widths, mask density, (lr, schedule) per model
    ((2, 3, 3, 3, 1), 0.6, [(0.1, "cosine"), (0.05, "step"), (0.2, "constant")]),
    ((2, 7, 3, 3, 1), 0.5, [(0.1, "step"), (0.05, "cosine")]),
    ((2, 4, 1), 1.0, [(0.2, "cosine")]),
    ((2, 5, 4, 3, 2, 1), 0.7, [(0.1, "constant"), (0.05, "cosine")]),
    ((2, 6, 6, 1), 1.0, [(0.1, "cosine")]),
]


@pytest.mark.parametrize("widths,density,hps", CASES)
def test_engine_matches_reference(subset, widths, density, hps):
    X, y = subset
    rng = np.random.default_rng(len(widths) * 10 + len(hps))
    R = len(hps)
    masks = random_masks(widths, R, rng, density)
    seeds = [11 + r for r in range(R)]
    res = train_masks(X, y, widths, masks, lrs=[h[0] for h in hps], schedules=[h[1] for h in hps], seeds=seeds,
                      epochs=2)
    for r, (lr, schedule) in enumerate(hps):
        model, ref = reference(widths, masks, r, X, y, lr, schedule, seeds[r], 2)
        assert max_weight_error(model, res, r) < 1e-4
        assert abs(res.train_acc[r] - ref.train_acc) <= 1 / len(X)  # a point on the boundary may flip
        assert res.final_loss[r] == pytest.approx(ref.final_loss, rel=1e-5)
        assert not res.diverged[r] and res.epochs_run[r] == ref.epochs_run == 2


def test_engine_matches_reference_on_full_spiral(spiral):
    X, y = spiral
    Xh, yh = make_heldout()
    widths = (2, 3, 3, 3, 1)
    masks = random_masks(widths, 2, np.random.default_rng(3), 0.6)
    hps = [(0.1, "cosine", 0), (0.05, "step", 4)]
    res = train_masks(X, y, widths, masks, lrs=[h[0] for h in hps], schedules=[h[1] for h in hps],
                      seeds=[h[2] for h in hps], epochs=2, X_heldout=Xh, y_heldout=yh)
    for r, (lr, schedule, seed) in enumerate(hps):
        model, ref = reference(widths, masks, r, X, y, lr, schedule, seed, 2)
        assert max_weight_error(model, res, r) < 1e-4
        assert abs(res.train_acc[r] - ref.train_acc) <= 1 / len(X)
        assert res.final_loss[r] == pytest.approx(ref.final_loss, rel=1e-5)
        held, _ = evaluate(model, torch.as_tensor(Xh), torch.as_tensor(yh))
        assert abs(res.heldout_acc[r] - held) <= 1 / len(Xh)


def test_engine_matches_reference_while_learning(spiral):
    """A full-spiral epoch (390 steps) of a wider net that learns (chunks of > 4 weights per unit).

    Not two: in its second epoch this run crosses a point where float rounding decides (a change
    of the learning rate by 1e-7 relative moves its weights by 1.7e-2 there, in the engine at
    either vector width and in the reference alike): chaos, which a comparison of two trainers
    cannot tell from an error."""
    X, y = spiral
    widths = (2, 12, 8, 1)
    masks = random_masks(widths, 1, np.random.default_rng(3), 0.8)
    res = train_masks(X, y, widths, masks, lrs=0.1, schedules="cosine", seeds=2, epochs=1)
    model, ref = reference(widths, masks, 0, X, y, 0.1, "cosine", 2, 1)
    assert ref.train_acc > 0.7
    assert max_weight_error(model, res, 0) < 1e-4
    assert abs(res.train_acc[0] - ref.train_acc) <= 1 / len(X)
    assert res.final_loss[0] == pytest.approx(ref.final_loss, rel=1e-5)


def test_masked_entries_stay_exactly_zero(subset):
    X, y = subset
    widths = (2, 4, 4, 1)
    masks = random_masks(widths, 4, np.random.default_rng(4), 0.5, eligible=False)
    res = train_masks(X, y, widths, masks, lrs=0.2, schedules="constant", seeds=[0, 1, 2, 3], epochs=2)
    for (W, b), m, bm in zip(res.weights, masks, bias_masks(masks)):
        assert np.all(W[~m] == 0) and np.all(W[m] != 0)
        assert np.all(b[~bm] == 0)


def test_divergence_is_reported_not_raised(subset):
    X, y = subset
    widths = (2, 3, 3, 3, 1)
    masks = random_masks(widths, 2, np.random.default_rng(5))
    res = train_masks(X, y, widths, masks, lrs=[1e4, 0.05], schedules="constant", seeds=[1, 2], epochs=3)
    model, ref = reference(widths, masks, 0, X, y, 1e4, "constant", 1, 3)
    assert ref.diverged and res.diverged[0]
    assert res.epochs_run[0] == ref.epochs_run
    assert not res.diverged[1] and res.epochs_run[1] == 3
    assert np.isfinite(res.final_loss[1]) and not np.isfinite(res.final_loss[0])


def test_models_trained_together_equal_models_trained_alone(subset):
    X, y = subset
    widths = (2, 3, 3, 3, 1)
    R = 7
    masks = random_masks(widths, R, np.random.default_rng(6))
    lrs = [0.05, 0.1, 0.2, 0.05, 0.1, 0.2, 0.1]
    schedules = ["cosine", "step", "constant", "step", "cosine", "constant", "cosine"]
    seeds = [0, 0, 1, 1, 2, 0, 3]
    together = train_masks(X, y, widths, masks, lrs=lrs, schedules=schedules, seeds=seeds, epochs=2)
    one_thread = train_masks(X, y, widths, masks, lrs=lrs, schedules=schedules, seeds=seeds, epochs=2, threads=1)
    for r in range(R):
        alone = train_masks(X, y, widths, [m[r:r + 1] for m in masks], lrs=lrs[r], schedules=schedules[r],
                            seeds=seeds[r], epochs=2)
        for other in (alone, one_thread):
            rr = 0 if other is alone else r
            assert other.train_acc[rr] == together.train_acc[r]
            assert other.final_loss[rr] == together.final_loss[r]
            for (W, b), (W2, b2) in zip(together.weights, other.weights):
                np.testing.assert_array_equal(W[r], W2[rr])
                np.testing.assert_array_equal(b[r], b2[rr])


def test_fixed_init_matches_reference(subset):
    X, y = subset
    wide = init_weights((2, 16, 16, 16, 1), 16, seed=42)
    widths = (2, 3, 3, 3, 1)
    masks = random_masks(widths, 2, np.random.default_rng(8))
    init = [(w.numpy(), b.numpy()) for w, b in wide]
    res = train_masks(X, y, widths, masks, lrs=0.1, schedules="cosine", seeds=[0, 1], epochs=2, init=init)
    for r in range(2):
        model, _ = reference(widths, masks, r, X, y, 0.1, "cosine", r, 2, params=init)
        assert max_weight_error(model, res, r) < 1e-4


def test_bad_arguments_raise(subset):
    X, y = subset
    widths = (2, 3, 1)
    masks = [np.ones((2, 3, 2), bool), np.ones((2, 1, 3), bool)]
    with pytest.raises(ValueError):
        train_masks(X, y, widths, [masks[0][:, :2]] + masks[1:], lrs=0.1, schedules="cosine", seeds=0, epochs=1)
    with pytest.raises(ValueError):
        train_masks(X, y, widths, masks, lrs=[0.1], schedules="cosine", seeds=0, epochs=1)
    with pytest.raises(ValueError):
        train_masks(X, y, widths, masks, lrs=0.1, schedules="linear", seeds=0, epochs=1)
    with pytest.raises(ValueError):
        train_masks(X, y, (2, 3, 2), [masks[0], np.ones((2, 2, 3), bool)], lrs=0.1, schedules="cosine", seeds=0)


def test_progress_and_many_seeds(subset):
    """Progress is reported per chunk of epochs; every model has its own seed (one data slot each)."""
    X, y = subset
    widths = (2, 3, 1)
    R = 5
    masks = random_masks(widths, R, np.random.default_rng(9))
    calls = []
    res = train_masks(X, y, widths, masks, lrs=0.1, schedules="step", seeds=np.arange(R) + 100, epochs=12,
                      progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (12, 12) and len(calls) == 2
    quiet = train_masks(X, y, widths, masks, lrs=0.1, schedules="step", seeds=np.arange(R) + 100, epochs=12)
    for (W, b), (W2, b2) in zip(res.weights, quiet.weights):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)


# -- exact early exit --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("hidden, max_nnz, n_masks, heldout",
                         [((3, 3, 3), 20, 250, "between"), ((4, 2, 5), 24, 150, "between"),
                          ((3, 3, 3), 22, 60, "noisy")])
def test_early_exit_gives_the_rows_of_full_training(hidden, max_nnz, n_masks, heldout):
    """Early exit on and off: identical accuracy (training and held-out) and divergence on real
    50-epoch spiral runs of sparse masks, every schedule and lr up to 0.2, each run its own init;
    runs that never exit are identical to the last bit. Some runs must exit, or nothing is tested."""
    from cubist.data import Dataset
    from search.enumerate import enumerate_masks
    from cubist.masks import mask_key
    from search.phases import search_init_seed
    widths = (2, *hidden, 1)
    data = Dataset.spiral(heldout=heldout)
    pool = [m for m in enumerate_masks(widths) if sum(int(x.sum()) for x in m[:-1]) <= max_nnz - hidden[-1]]
    pick = np.random.default_rng(3).choice(len(pool), n_masks, replace=False)
    grid = [(lr, s) for lr in (0.05, 0.1, 0.2) for s in ("cosine", "step", "constant")]
    runs = [(pool[i], lr, s) for i in pick for lr, s in grid]
    masks = [np.stack([r[0][l] for r in runs]) for l in range(len(widths) - 1)]
    kw = dict(lrs=[r[1] for r in runs], schedules=[r[2] for r in runs], seeds=[0] * len(runs),
              init_seeds=[search_init_seed(widths, mask_key(m), lr, s, 0) for m, lr, s in runs],
              X_heldout=data.X_heldout, y_heldout=data.y_heldout)
    on = train_masks(data.X, data.y, widths, masks, early_exit=True, **kw)
    off = train_masks(data.X, data.y, widths, masks, early_exit=False, **kw)
    exited = on.exit_epoch > 0
    assert exited.sum() >= 0.01 * len(runs) and (on.exit_epoch[exited] < 50).all()
    assert (off.exit_epoch == 0).all() and (on.epochs_run[exited] == on.exit_epoch[exited]).all()
    np.testing.assert_array_equal(on.train_acc, off.train_acc)
    np.testing.assert_array_equal(on.heldout_acc, off.heldout_acc)
    np.testing.assert_array_equal(on.diverged, off.diverged)
    assert (on.train_acc[exited] == 0.5).all()
    np.testing.assert_array_equal(on.final_loss[~exited], off.final_loss[~exited])
    for (w_on, b_on), (w_off, b_off) in zip(on.weights, off.weights):
        np.testing.assert_array_equal(w_on[~exited], w_off[~exited])


def test_early_exit_cone_is_invariant():
    """The cone {p <= 0, v >= kappa p} is never left by gradient-free float32 SGD steps at any
    lr up to the base rate (every schedule decreases), from its boundary and from inside."""
    rng = np.random.default_rng(0)
    mu, wd = np.float32(0.9), np.float32(5e-4)
    for lr0 in (0.05, 0.1, 0.2, 0.5):
        kappa = np.float32(engine.cone_kappa(lr0, 0.9, 5e-4))
        assert kappa > 0
        p = -rng.lognormal(0, 3, 20000).astype(np.float32)
        v = (kappa * p * rng.uniform(0, 1, 20000) + (rng.uniform(size=20000) < 0.3) * rng.lognormal(0, 3, 20000)
             ).astype(np.float32)
        v[:500] = kappa * p[:500]
        for e in range(50):
            lr = np.float32(lr0 * (1 + np.cos(np.pi * e / 50)) / 2)
            for _ in range(390):
                v = mu * v + (np.float32(0) + wd * p)
                p = p - lr * v
            assert (p <= 0).all() and (v >= kappa * p).all()
    assert engine.cone_kappa(0.1, 0.9, 0.0) > 0 and engine.cone_kappa(1e6, 0.9, 5e-4) == 0.0


def test_early_exit_needs_balanced_classes(subset):
    X, y = subset
    y = y.copy()
    y[: 10] = 1 - y[: 10]
    with pytest.raises(ValueError, match="balanced"):
        train_masks(X, y, (2, 2, 1), [np.ones((2, 2), bool), np.ones((1, 2), bool)], lrs=0.1, schedules="cosine",
                    seeds=0, epochs=1, early_exit=True)


def test_the_early_exits_data_part_is_computed_once_per_data_set(subset, monkeypatch):
    """``_exit_data`` is remembered by the points' bytes: the same data gives the same arrays
    without recomputing, other data (or another batch size) its own, equal to a fresh computation."""
    X, y = subset
    monkeypatch.setattr(engine, "_EXIT_DATA", {})
    calls = []
    real = engine._data_hull
    monkeypatch.setattr(engine, "_data_hull", lambda P: calls.append(len(P)) or real(P))
    a = engine._exit_data(X, X[:64], 128)
    assert engine._exit_data(X.copy(), X[:64].copy(), 128) is a and len(calls) == 1
    b = engine._exit_data(X[1:], X[:64], 128)
    c = engine._exit_data(X, X[:64], 64)
    assert len(calls) == 3 and b is not a and c is not a
    monkeypatch.setattr(engine, "_EXIT_DATA", {})
    fresh = engine._exit_data(X[1:], X[:64], 128)
    assert all(np.array_equal(u, v) for u, v in zip(b, fresh))


def test_remembered_data_orders_are_the_data_orders():
    from cubist.train import epoch_permutation
    for seed, epoch in ((0, 0), (3, 7), (0, 0)):
        assert np.array_equal(engine._permutation(seed, epoch, 1000), epoch_permutation(seed, epoch, 1000))
    assert engine._permutation(5, 1, 1000) is engine._permutation(5, 1, 1000)
