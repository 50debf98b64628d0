"""The README's two extension examples work as written: a pruning method in one file, a data set
in one registry entry (the code blocks are read from README.md and executed)."""
import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _block_after(marker: str) -> str:
    text = open(os.path.join(ROOT, "README.md")).read()
    start = text.index(marker)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_a_method_in_one_file(tmp_path):
    from pruners import METHODS, run_sweep
    from pruners.runner import SweepConfig
    code = _block_after("Adding a method is one\nfile")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    try:
        assert "mag" in METHODS
        cfg = SweepConfig(method="mag", widths=(2, 4, 4, 1), nnz=(10,), lrs=(0.1,), schedules=("cosine",),
                          epochs=1, subsample=50, method_params={"power": 2.0})
        rows = run_sweep(cfg)
        assert len(rows) == 1 and rows[0]["weight_nnz"] == 10 and '"power":2.0' in rows[0]["params"]
    finally:
        METHODS.pop("mag", None)


def test_a_data_set_in_one_entry():
    from dataclasses import asdict, dataclass

    from cubist.data import DATASETS, DataConfig

    @dataclass(frozen=True)
    class MoonsRecipe:
        points_per_class: int = 50

        def to_dict(self):
            return asdict(self)

    def make_moons(recipe, split):
        t = np.linspace(0, np.pi, recipe.points_per_class) + (0.01 if split != "train" else 0.0)
        X = np.concatenate([np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)])
        return X.astype(np.float32), np.repeat([0.0, 1.0], recipe.points_per_class).astype(np.float32)

    code = _block_after("Adding a data set is one registry entry")
    try:
        exec(compile(code, "README.md", "exec"), {"MoonsRecipe": MoonsRecipe, "make_moons": make_moons})
        d = DataConfig("moons").build()
        assert d.X.shape == (100, 2) and d.balanced and d.recipe["name"] == "moons"
    finally:
        DATASETS.pop("moons", None)
