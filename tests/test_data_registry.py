"""The data registry: one DataConfig builds one Dataset with one id; a second task (two circles)
goes end to end through `cubist data`, the search, the pruners, the audit and the plots."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

import cubist
from cubist.circles import CirclesRecipe, make_circles
from cubist.cli import main
from cubist.data import DATASETS, DataConfig, DataSpec, Dataset, get_dataset, register_dataset
from cubist.store import ResultStore

TINY = ["--epochs", "2", "--lrs", "0.1", "--schedules", "cosine", "--quiet", "--jobs", "1"]


def test_the_spiral_is_the_default_and_keeps_its_id():
    d = DataConfig().build()
    assert d.name == "spiral" and d.id == Dataset.spiral().id == "27765ddb7b7d1ddf"
    assert DataConfig().to_row() == {}                       # spiral rows keep their run ids
    assert DataConfig("spiral", recipe=(("turns", 2.0),)) == DataConfig()   # defaults are dropped


def test_circles_by_hand():
    X, y = make_circles(CirclesRecipe(points_per_class=8, radius_ratio=0.25))
    assert X.dtype == np.float32 and X.shape == (16, 2) and list(y) == [0] * 8 + [1] * 8
    r = np.linalg.norm(X - X.mean(axis=0), axis=1)          # still two circles after standardising
    assert np.allclose(r[:8], r[0]) and np.allclose(r[8:], r[8]) and np.isclose(r[0] / r[8], 0.25)
    assert abs(X.mean(axis=0)).max() < 1e-6
    Xb, _ = make_circles(CirclesRecipe(points_per_class=8, radius_ratio=0.25), "between")
    angles = np.sort(np.arctan2(Xb[8:, 1], Xb[8:, 0]) % (2 * np.pi))
    assert np.allclose(angles, (np.arange(8) + 0.5) * 2 * np.pi / 8, atol=1e-5)


def test_one_config_one_dataset_one_id():
    c = DataConfig("circles").build()
    assert c.balanced and c.X.shape == (4000, 2) and c.recipe["name"] == "circles"
    assert c.id not in (DataConfig().build().id, DataConfig("circles", recipe=(("radius_ratio", 0.3),)).build().id)
    assert DataConfig("circles", heldout="noisy").build().id == c.id   # the held-out kind is not in the id
    for config in (DataConfig("circles"), DataConfig("circles", "noisy", (("seed", 3),)), DataConfig()):
        assert DataConfig.from_row(config.to_row(), config.heldout) == config
    with pytest.raises(ValueError, match="unknown data set"):
        DataConfig("moons")
    with pytest.raises(TypeError):
        DataConfig("circles", recipe=(("turns", 2.0),))


def test_adding_a_data_set_is_one_registry_entry(tmp_path, capsys):
    def make_line(recipe, split):
        x = np.linspace(-1, 1, 2 * recipe.n, dtype=np.float32) + (0.01 if split != "train" else 0)
        return np.stack([x, x], axis=1), (x > 0).astype(np.float32)

    from dataclasses import asdict, dataclass

    @dataclass(frozen=True)
    class LineRecipe:
        n: int = 10

        def to_dict(self):
            return asdict(self)

    register_dataset(DataSpec("line", LineRecipe, make_line, description="points on a line"))
    try:
        assert main(["data", "--data", "line", "--n", "4", "--out", str(tmp_path / "l.parquet")]) == 0
        assert pq.read_table(tmp_path / "l.parquet").num_rows == 8
        line = DataConfig("line", recipe=(("n", 4),))
        X, y = line.arrays()
        assert f"dataset_id={line.split_id(X, y)}" in capsys.readouterr().out
        assert line.build().balanced and get_dataset("line").description == "points on a line"
    finally:
        del DATASETS["line"]


def _store_rows(path):
    df = ResultStore(path).load()
    return df, [json.loads(c).get("data", {}) for c in df["config"]]


@pytest.mark.slow
def test_circles_end_to_end(tmp_path, capsys):
    store = str(tmp_path / "runs")
    circles = DataConfig("circles").build()
    out = tmp_path / "c.parquet"
    assert main(["data", "--data", "circles", "--out", str(out)]) == 0
    assert pq.read_table(out).schema.metadata[b"cubist.dataset_id"].decode() == circles.id
    assert main(["search", "widths", "--data", "circles", "--min-width", "3", "--max-width", "3",
                 "--out", store, *TINY]) == 0
    assert main(["search", "masks", "--data", "circles", "--widths", "3,1,1", "--max-nnz", "9",
                 "--out", store, *TINY]) == 0
    assert main(["prune", "--data", "circles", "--method", "gmp", "--widths", "3,3,3", "--nnz", "12",
                 "--out", store, *TINY]) == 0
    df, data = _store_rows(store)
    assert set(df["kind"]) == {"search_widths", "search_masks", "prune"}
    assert set(df["dataset_id"]) == {circles.id}
    assert all(d.get("name") == "circles" for d in data)
    # a stored circles row redraws on its own data set
    import pruners
    row = df[df["kind"] == "prune"].iloc[0]
    again = pruners.rerun(row.to_dict())
    assert again["run_id"] == row["run_id"] and again["train_acc"] == row["train_acc"]
    # rerunning the same commands adds nothing (the runs are the circles runs, not spiral ones)
    assert main(["prune", "--data", "circles", "--method", "gmp", "--widths", "3,3,3", "--nnz", "12",
                 "--out", store, *TINY]) == 0
    assert len(ResultStore(store).load()) == len(df)
    capsys.readouterr()
    assert main(["audit", store, "--out", str(tmp_path / "audit"), "--no-figures", "--target", "0.5"]) == 0
    report = (tmp_path / "audit" / "report.md").read_text()
    assert "Cubist Spiral audit" in report and circles.id in report
    # beside a spiral store the audit never pools the two: one report per data set
    spiral = str(tmp_path / "spiral")
    assert main(["prune", "--method", "gmp", "--widths", "3,3,3", "--nnz", "12", "--out", spiral, *TINY]) == 0
    assert main(["audit", store, spiral, "--out", str(tmp_path / "both"), "--no-figures", "--target", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert f"Data set circles ({circles.id})" in printed and "Data set spiral (27765ddb7b7d1ddf)" in printed
    index = (tmp_path / "both" / "report.md").read_text()
    assert "one report per data set" in index
    for label in (f"circles-{circles.id}", "spiral-27765ddb7b7d1ddf"):
        assert (tmp_path / "both" / label / "report.md").exists() and label in index
    run = df[df["kind"] == "prune"].iloc[0]["run_id"]
    assert main(["plot", store, "--run-id", run, "--out", str(tmp_path / "p.png"), "--what", "regions"]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0
