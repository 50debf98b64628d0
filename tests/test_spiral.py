import hashlib
import subprocess
import sys

import numpy as np
import pytest

import cubist
import cubist.spiral as cubist_spiral
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


# The paper's artefacts (Zhang & Papyan, ICML 2024): sha256 of its X (float32, C order,
# (49982, 2)) and y (float32, (49982, 1), the same bytes as (49982,)), and its first and last points.
PAPER_X_SHA256 = "7f5bc2e560a6e7f92c8526b29ba0c6e37d3f9d9b788f59972e50149857bdd69b"
PAPER_Y_SHA256 = "07826c9dd61e50822c941a33ccc0610e514e7b722f1bc819eed375a5b57640b0"


def test_bit_for_bit_with_the_paper():
    X, y = cubist.make_spiral()
    assert hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest() == PAPER_X_SHA256
    assert hashlib.sha256(y.reshape(-1, 1).tobytes()).hexdigest() == PAPER_Y_SHA256
    assert hashlib.sha256(y.tobytes()).hexdigest() == PAPER_Y_SHA256
    np.testing.assert_allclose(X[0], [0.5845568776, -0.8009657264], rtol=0, atol=1e-9)
    np.testing.assert_allclose(X[1], [0.5838431120, -0.8009183407], rtol=0, atol=1e-9)
    np.testing.assert_allclose(X[-1], [-1.3376986980, -0.8698577285], rtol=0, atol=1e-9)
    assert (cubist_spiral.PAPER_X_SHA256, cubist_spiral.PAPER_Y_SHA256) == (PAPER_X_SHA256, PAPER_Y_SHA256)


def test_module_import_does_not_import_torch():
    code = "import sys, cubist.spiral; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_segment_counts_and_endpoints():
    """Truncated per-segment counts sum to 24,991; a segment runs from v_{i+1} (t = 0) to v_i
    (t = 1), both included, so vertices repeat at the joints."""
    a, b = _vertices(SpiralRecipe(), None)
    counts = []
    for cur in (a, b):
        lens = np.linalg.norm(np.diff(cur, axis=0), axis=1)
        counts.append([int(l / lens.sum() * 25000) for l in lens])
        assert sum(counts[-1]) == 24991
    raw, _ = cubist_spiral._raw(SpiralRecipe())
    raw = raw.numpy()
    n0, n1 = counts[0][:2]
    np.testing.assert_array_equal(raw[0], a[1].astype(np.float32))
    np.testing.assert_array_equal(raw[n0 - 1], a[0].astype(np.float32))
    np.testing.assert_array_equal(raw[n0], a[2].astype(np.float32))
    np.testing.assert_array_equal(raw[n0 + n1 - 1], a[1].astype(np.float32))
    np.testing.assert_array_equal(raw[24991], b[1].astype(np.float32))
    X, _ = cubist.make_spiral()
    np.testing.assert_array_equal(X[0], X[n0 + n1 - 1])


def test_deterministic_and_id_stable():
    X1, y1 = cubist.make_spiral()
    X2, y2 = cubist.make_spiral()
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    assert cubist.dataset_id(X1, y1, {"a": 1}) == cubist.dataset_id(X2, y2, {"a": 1})
    assert cubist.dataset_id(X1, y1, {"a": 1}) != cubist.dataset_id(X1, y1, {"a": 2})
    d1, d2 = cubist.Dataset.spiral(), cubist.Dataset.spiral()
    assert d1.id == d2.id and d1.id != cubist.Dataset.spiral(noise_std=0.5).id


def spiral_id(recipe, X, y, split="train"):
    """The id of a spiral recipe's split, from the registry (the one home of data set ids)."""
    from cubist.data import DataConfig
    return DataConfig("spiral", recipe=tuple(recipe.to_dict().items())).split_id(X, y, split)


def test_one_data_set_one_id():
    """A Dataset's id is its training set's (spiral_id): not changed by the held-out kind."""
    d = cubist.Dataset.spiral()
    assert d.id == spiral_id(SpiralRecipe(), d.X, d.y)
    assert d.id == "27765ddb7b7d1ddf"   # the id every committed result row (results/) carries
    assert len(d.id) == 16 and int(d.id, 16) >= 0
    noisy = cubist.Dataset.spiral(heldout="noisy")
    assert noisy.id == d.id and noisy.recipe["heldout"] == "noisy" and d.recipe["heldout"] == "between"
    assert noisy.X_heldout.shape != d.X_heldout.shape  # different held-out sets, same id
    other = cubist.Dataset.spiral(turns=1.5)
    assert other.id == spiral_id(SpiralRecipe(turns=1.5), other.X, other.y) and other.id != d.id
    # a held-out split has its own id
    Xb, yb = cubist.make_heldout("between")
    assert spiral_id(SpiralRecipe(), Xb, yb, "between") not in (d.id, spiral_id(SpiralRecipe(), Xb, yb))
    with pytest.raises(ValueError):
        spiral_id(SpiralRecipe(), d.X, d.y, "bogus")


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


def test_heldout_uses_the_training_statistics():
    # with no extra noise the "noisy" set is the training set, standardised by the same torch steps
    X, y = cubist.make_spiral()
    X0, y0 = cubist.make_heldout("noisy", noise=0.0)
    assert np.array_equal(X0, X) and np.array_equal(y0, y)
    X0, _ = cubist.make_heldout("noisy", noise=0.0, noise_std=0.3, seed=5)
    assert np.array_equal(X0, cubist.make_spiral(noise_std=0.3, seed=5)[0])
