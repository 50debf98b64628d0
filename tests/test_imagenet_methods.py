"""Every registered method runs through the ImageNet runner on a small conv net (one short run
each, one process), ends at exactly its target and writes its rows."""
import pytest
import torch

from pruners.base import load_methods
from pruners.imagenet import ImageNetConfig, run

from imagenet_helpers import tiny_image_folder

# method parameters that keep one run short on 4 steps (the papers' defaults assume long runs)
SHORT = {"synflow": {"rounds": 2}, "force": {"rounds": 2}, "itersnip": {"rounds": 2}, "rigl": {"update_every": 1},
         "imp": {"cycles": 1}, "lrr": {"cycles": 1}, "imp+pilot": {"cycles": 1}, "lrr+pilot": {"cycles": 1},
         "gmp": {"prune_steps": 3}, "prospr": {"inner_steps": 1}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_image_folder(tmp_path_factory.mktemp("tiny"), classes=3, train=11, val=3, size=8)


@pytest.mark.parametrize("method", sorted(load_methods()))
def test_every_method_runs_through_the_runner(method, data, tmp_path, one_thread):
    params = {k: v for k, v in SHORT.get(method, {}).items()
              if k in {f for f in load_methods()[method].Config.__dataclass_fields__}}
    cfg = ImageNetConfig(data=data, arch="small_cnn", method=method, target_density=0.3, epochs=1, batch_size=8,
                         lr=0.05, schedule="cosine", image_size=8, augment="none", workers=0, score_pool=8,
                         out=str(tmp_path / "out"), method_params=params, device="cpu")
    rows = run(cfg, quiet=True)
    final = rows[-1]
    import json
    m = json.loads(final["metrics"])
    assert final["target_nnz"] == round(0.3 * m["dense_weights"]) == final["weight_nnz"]
    assert m["stage"] == "final" and 0 < m["effective_density"] <= m["density"] <= 0.3 + 1e-9
    assert 0 <= final["heldout_acc"] <= 1 and m["images"] == 9
    from cubist import ResultStore
    assert len(ResultStore(cfg.out).load()) == len(rows)
