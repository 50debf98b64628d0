import itertools

import numpy as np
import pytest
import torch

import cubist
from cubist.masks import bias_masks, effective_masks, mask_counts, pack_masks, unpack_masks


def random_masks(rng, widths, p):
    return [rng.random((widths[l + 1], widths[l])) < p for l in range(len(widths) - 1)]


def brute_force_paths(masks):
    """Enumerate every input-to-output path; return the set of (layer, out, in) weights on one."""
    widths = [masks[0].shape[1]] + [m.shape[0] for m in masks]
    on_path = set()
    for units in itertools.product(*[range(w) for w in widths]):
        edges = [(l, units[l + 1], units[l]) for l in range(len(masks))]
        if all(masks[l][j, i] for l, j, i in edges):
            on_path.update(edges)
    return on_path


@pytest.mark.parametrize("seed", range(25))
def test_effective_nnz_against_path_enumeration(seed):
    rng = np.random.default_rng(seed)
    widths = [2] + list(rng.integers(1, 5, size=rng.integers(1, 4))) + [1]
    masks = random_masks(rng, widths, p=rng.uniform(0.2, 0.8))
    on_path = brute_force_paths(masks)
    eff = effective_masks(masks)
    got = {(l, j, i) for l, m in enumerate(eff) for j, i in zip(*np.nonzero(m))}
    assert got == on_path
    counts = mask_counts(masks)
    assert counts["effective_nnz"] == len(on_path)
    assert counts["weight_nnz"] == sum(int(m.sum()) for m in masks)
    # dead hidden units: on no path
    alive = {(l + 1, j) for l, j, _ in on_path} | {(l, i) for l, _, i in on_path}
    hidden = [(l, u) for l in range(1, len(widths) - 1) for u in range(widths[l])]
    assert counts["dead_units"] == sum((h not in alive) for h in hidden)


def test_replica_axis_matches_per_replica():
    rng = np.random.default_rng(0)
    widths = (2, 4, 3, 1)
    reps = [random_masks(rng, widths, 0.5) for _ in range(6)]
    stacked = [np.stack([r[l] for r in reps]) for l in range(3)]
    counts = mask_counts(stacked)
    for k, r in enumerate(reps):
        single = mask_counts(r)
        for key in single:
            assert counts[key][k] == single[key]


def test_bias_rule():
    W1 = np.array([[1, 0], [0, 0], [1, 1]], bool)
    W2 = np.array([[1, 0, 0], [0, 0, 1]], bool)  # unit 1 of layer 1 has no outgoing weight
    W3 = np.array([[0, 1]], bool)                # unit 0 of layer 2 has no outgoing weight
    b = bias_masks([W1, W2, W3])
    assert b[0].tolist() == [True, False, True]
    assert b[1].tolist() == [False, True]
    assert b[2].tolist() == [True]
    assert mask_counts([W1, W2, W3])["bias_nnz"] == 4


def test_pack_roundtrip():
    rng = np.random.default_rng(1)
    masks = random_masks(rng, (2, 5, 3, 1), 0.5)
    bits, shapes = pack_masks(masks)
    back = unpack_masks(bits, shapes)
    assert all(np.array_equal(a, b) for a, b in zip(masks, back))


def test_init_scale_and_nesting():
    small = cubist.init_weights((2, 3, 3, 3, 1), init_width=16, seed=5)
    wide = cubist.init_weights((2, 16, 16, 16, 1), init_width=16, seed=5)
    for (ws, bs), (ww, bw) in zip(small, wide):
        assert torch.equal(ws, ww[: ws.shape[0], : ws.shape[1]])
        assert torch.equal(bs, bw[: bs.shape[0]])
    # bounds: 1/sqrt(fan_in of the width-16 layer)
    for (w, b), fan_in in zip(wide, (2, 16, 16, 16)):
        bound = 1 / np.sqrt(fan_in)
        assert w.abs().max() <= bound and b.abs().max() <= bound
        assert w.abs().max() > 0.8 * bound  # uses the range
    own = cubist.init_weights((2, 3, 3, 3, 1), init_width=None, seed=5)
    assert own[1][0].abs().max() <= 1 / np.sqrt(3) and own[1][0].abs().max() > 1 / np.sqrt(16)


def test_masked_mlp_matches_torch_default_linear_init():
    torch.manual_seed(0)
    ref = torch.nn.Linear(16, 16)
    bound = 1 / np.sqrt(16)
    assert ref.weight.abs().max() <= bound
    m = cubist.MaskedMLP((2, 16, 16, 16, 1), seed=0)
    assert m.layers[1].weight.abs().max() <= bound


def test_masked_mlp_masks_biases_and_forward():
    rng = np.random.default_rng(2)
    widths = (2, 3, 3, 3, 1)
    masks = random_masks(rng, widths, 0.5)
    m = cubist.MaskedMLP(widths, masks, seed=1)
    for l, lin in enumerate(m.layers):
        assert torch.equal(lin.weight != 0, torch.as_tensor(masks[l]) & (lin.weight != 0))
        assert ((lin.weight == 0) | torch.as_tensor(masks[l])).all()
    for l, bm in enumerate(bias_masks(masks)):
        assert ((m.layers[l].bias == 0) | torch.as_tensor(bm)).all()
    assert m.counts() == mask_counts(masks)
    # forward equals a plain computation with the masked parameters
    x = torch.randn(7, 2)
    h = x
    for l, (w, b) in enumerate(m.weights_numpy()):
        h = h @ torch.as_tensor(w).T + torch.as_tensor(b)
        if l < 3:
            h = torch.relu(h)
    torch.testing.assert_close(m(x), h.squeeze(-1))


def test_bad_masks():
    with pytest.raises(ValueError):
        cubist.MaskedMLP((2, 3, 1), [np.ones((3, 2)), np.ones((2, 3))])
    with pytest.raises(ValueError):
        cubist.MaskedMLP((2, 3, 1), [np.ones((3, 2))])
    with pytest.raises(ValueError):
        cubist.MaskedMLP((2, 0, 1))
