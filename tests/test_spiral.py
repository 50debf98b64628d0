import numpy as np
import pytest

import cubist
from cubist.spiral import SpiralRecipe, _vertices


def test_default_counts_and_order():
    X, y = cubist.make_spiral()
    assert X.shape == (49982, 2) and X.dtype == np.float32
    assert y.shape == (49982,) and y.dtype == np.float32
    assert y.sum() == 24991
    assert (y[:24991] == 0).all() and (y[24991:] == 1).all()


def test_standardised():
    X, _ = cubist.make_spiral()
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(X.std(axis=0, ddof=1), 1, atol=1e-4)


def test_recipe_by_hand():
    """Independent re-derivation of the paper's recipe for the first segment of class 0."""
    theta = np.linspace(np.pi, 5 * np.pi, 17) + 0.4 * np.pi
    r = 10 * theta + np.pi
    c = np.stack([r * np.cos(theta), r * np.sin(theta)], 1)
    n = np.stack([np.cos(theta), np.sin(theta)], 1)
    a, b = c + 15 * n, c - 15 * n
    shift = np.minimum(a.min(0), b.min(0))
    a, b = a - shift, b - shift
    lens = np.linalg.norm(np.diff(a, axis=0), axis=1)
    counts = [int(l / lens.sum() * 25000) for l in lens]
    assert sum(counts) == 24991
    t = np.linspace(0, 1, counts[0], dtype=np.float32).astype(np.float64)[:, None]
    seg0 = (t * a[0] + (1 - t) * a[1]).astype(np.float32)
    pts = []
    for cur in (a, b):
        for i in range(16):
            m = int(np.linalg.norm(cur[i + 1] - cur[i]) / np.linalg.norm(np.diff(cur, axis=0), axis=1).sum() * 25000)
            tt = np.linspace(0, 1, m, dtype=np.float32).astype(np.float64)[:, None]
            pts.append(tt * cur[i] + (1 - tt) * cur[i + 1])
    raw = np.concatenate(pts).astype(np.float32)
    mean, std = raw.mean(0, dtype=np.float32), raw.std(0, ddof=1, dtype=np.float32)
    X, _ = cubist.make_spiral()
    np.testing.assert_array_equal(X, ((raw - mean) / std).astype(np.float32))
    np.testing.assert_array_equal(X[: len(seg0)], ((seg0 - mean) / std).astype(np.float32))
    # the first point is v_1 (t = 0), the last of the segment v_0 (t = 1)
    np.testing.assert_allclose(raw[0], a[1], rtol=1e-6)


def test_deterministic_and_id_stable():
    X1, y1 = cubist.make_spiral()
    X2, y2 = cubist.make_spiral()
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert cubist.dataset_id(X1, y1, {"a": 1}) == cubist.dataset_id(X2, y2, {"a": 1})
    assert cubist.dataset_id(X1, y1, {"a": 1}) != cubist.dataset_id(X1, y1, {"a": 2})
    d1, d2 = cubist.Dataset.spiral(), cubist.Dataset.spiral()
    assert d1.id == d2.id and d1.id != cubist.Dataset.spiral(noise_std=0.5).id


def test_noise_is_seeded_and_changes_points():
    Xa, _ = cubist.make_spiral(noise_std=1.0, seed=3)
    Xb, _ = cubist.make_spiral(noise_std=1.0, seed=3)
    Xc, _ = cubist.make_spiral(noise_std=1.0, seed=4)
    X0, _ = cubist.make_spiral()
    assert np.array_equal(Xa, Xb) and not np.array_equal(Xa, Xc)
    assert Xa.shape == X0.shape and not np.array_equal(Xa, X0)
    assert np.array_equal(cubist.make_spiral(seed=9)[0], X0)  # seed only matters with noise


def test_turns_offset_points():
    X, y = cubist.make_spiral(turns=1)
    assert len(_vertices(SpiralRecipe(turns=1), None)[0]) == 9
    for count in (len(y) - y.sum(), y.sum()):  # truncation loses < 1 point per segment
        assert 25000 - 8 < count <= 25000
    Xs, ys = cubist.make_spiral(points_per_class=1000)
    for count in (len(ys) - ys.sum(), ys.sum()):
        assert 1000 - 16 < count <= 1000
    # a larger offset separates the classes more: the closest pair of points of different
    # classes (in raw units) grows with the offset
    near = SpiralRecipe(offset=5.0)
    far = SpiralRecipe(offset=15.0)
    gap = []
    for r in (near, far):
        a, b = _vertices(r, None)
        gap.append(np.linalg.norm(a - b, axis=1).min())
    assert gap[0] == pytest.approx(10.0) and gap[1] == pytest.approx(30.0)


@pytest.mark.parametrize("bad", [dict(noise_std=-1), dict(turns=0), dict(points_per_class=1)])
def test_bad_recipe(bad):
    with pytest.raises(ValueError):
        cubist.make_spiral(**bad)


def test_heldout_sets():
    X, y = cubist.make_spiral()
    Xb, yb = cubist.make_heldout("between")
    assert len(Xb) == len(X) - 32 and yb.sum() == len(yb) / 2  # one midpoint fewer per segment
    # midpoints lie between consecutive training points of the same segment
    np.testing.assert_allclose(Xb[0], (X[0] + X[1]) / 2, atol=1e-5)
    assert not np.isin(Xb.view("f8").ravel(), X.view("f8").ravel()).any()
    Xn, yn = cubist.make_heldout("noisy", noise=0.5)
    assert Xn.shape == X.shape and np.array_equal(yn, y)
    sd_raw = np.std(Xn - X, axis=0)
    assert (sd_raw > 0).all() and (sd_raw < 0.05).all()  # 0.5 raw units is small after standardising
    with pytest.raises(ValueError):
        cubist.make_heldout("bogus")
