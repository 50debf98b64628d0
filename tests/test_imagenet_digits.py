"""Real images: the digits exported by ``cubist data digits`` in the ImageFolder layout; LRR and
IMP bring a small CNN to 20% density with validation accuracy >= 90% through the runner."""
import json
import os

import pytest

from cubist.cli import main
from pruners.imagenet import ImageNetConfig, run


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("d") / "digits")
    assert main(["data", "digits", "--out", out]) == 0
    return out


def test_the_export_holds_every_digit_once(digits):
    files = [os.path.join(d, f) for d, _, fs in os.walk(digits) for f in fs]
    assert len(files) == 1797 and all(f.endswith(".png") for f in files)
    names = sorted(os.path.basename(f) for f in files)
    assert names == sorted(f"{i:04d}.png" for i in range(1797))
    for split in ("train", "val"):
        assert sorted(os.listdir(os.path.join(digits, split))) == [str(k) for k in range(10)]
    assert sum(len(os.listdir(os.path.join(digits, "val", str(k)))) for k in range(10)) == 355
    assert main(["data", "digits", "--out", digits]) == 2   # never over an existing directory
    assert not [e for e in os.listdir(os.path.dirname(digits)) if e.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lrr", "imp"])
def test_lrr_and_imp_reach_90_percent_at_20_percent_density(method, digits, tmp_path, one_thread):
    cfg = ImageNetConfig(data=digits, arch="small_cnn", method=method, target_density=0.2, epochs=4, batch_size=64,
                         lr=0.1, wd=5e-4, schedule="cosine", image_size=8, augment="none", workers=0, score_pool=64,
                         eval_every=100, out=str(tmp_path / "out"), method_params={"cycles": 2}, device="cpu")
    final = run(cfg, quiet=True)[-1]
    m = json.loads(final["metrics"])
    assert m["stage"] == "final" and m["images"] == 355
    assert abs(m["density"] - 0.2) < 1e-4 and final["weight_nnz"] == final["target_nnz"]
    assert final["heldout_acc"] >= 0.90, final["heldout_acc"]
    print(f"{method}: val top-1 {final['heldout_acc']:.4f} at density {m['density']:.4f}")
