import os

import pyarrow.parquet as pq
import pytest

from cubist.cli import main
from cubist.masks import unpack_masks
from search.enumerate import count_masks


def test_enumerate_writes_and_counts(tmp_path, capsys):
    out = tmp_path / "m.parquet"
    assert main(["search", "enumerate", "--widths", "2,2,3,2,1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    counts = count_masks((2, 2, 3, 2, 1))
    for nnz, c in counts.items():
        assert f"nnz {nnz:4d}: {c}\n" in text
    assert f"total: {sum(counts.values())} orbits masks" in text
    t = pq.read_table(out).to_pylist()
    assert len(t) == sum(counts.values())
    for row in t:
        masks = unpack_masks(row["mask_bits"], row["mask_shapes"])
        assert sum(int(m.sum()) for m in masks) == row["nnz"]


def test_enumerate_labelled_total_3_3_3(capsys):
    assert main(["search", "enumerate", "--widths", "2,3,3,3,1", "--symmetry", "labelled"]) == 0
    assert "total: 1755625 labelled masks" in capsys.readouterr().out


def test_init_checkpoint_roundtrip(tmp_path):
    from search.phases import FixedInit
    path = tmp_path / "init.pt"
    assert main(["search", "init", "--out", str(path), "--seed", "3"]) == 0
    init = FixedInit.load(str(path))
    import cubist
    ref = cubist.init_weights((2, 16, 16, 16, 1), 16, 3)
    sliced = init.sliced((2, 3, 3, 3, 1))
    for (w, b), (rw, rb) in zip(sliced, ref):
        assert (w == rw.numpy()[:w.shape[0], :w.shape[1]]).all() and (b == rb.numpy()[:b.shape[0]]).all()


@pytest.mark.parametrize("argv,needle", [
    (["search", "masks", "--widths", "3,x"], "expected comma-separated int"),
    (["search", "masks", "--widths", "3,3,3", "--target", "1.5"], "accuracy in (0, 1]"),
    (["search", "masks", "--widths", "3,3,3", "--schedules", "linear"], "is not one of"),
    (["search", "masks", "--widths", "3,3,3", "--exhaustive", "--max-nnz", "20"], "not allowed with"),
    (["search", "masks", "--widths", "3,3,3", "--init-checkpoint", "missing.pt"], "cannot read init checkpoint"),
    (["search", "masks", "--widths", "3,3,3", "--lrs", "-1"], "lr must be positive"),
    (["search", "enumerate", "--widths", "2,3"], "needs input, hidden and output"),
    (["search", "enumerate", "--widths", "2,3,1", "--out", "nodir/m.parquet"], "cannot write"),
    (["search", "widths", "--min-width", "4", "--max-width", "2", "--epochs", "1"], "min_width <= max_width"),
    (["search"], "required"),
])
def test_bad_input(tmp_path, capsys, argv, needle):
    os.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def _spiral_row(tmp_path):
    """A stored search row on the default spiral (the data set `search retrain` trains on)."""
    import numpy as np

    import cubist
    from cubist.store import make_row
    from handmade import full_mask
    widths = (2, 2, 1, 2, 1)
    masks = full_mask(widths)
    masks[0][1, 0] = False
    config = dict(kind="search_masks", method="mask", widths=list(widths), init_width=16, lr=0.1,
                  schedule="constant", epochs=1, batch_size=128, momentum=0.9, weight_decay=5e-4, seed=0,
                  target_nnz=None, params={}, dataset_id=cubist.Dataset.spiral().id)
    metrics = dict(train_acc=0.9, heldout_acc=0.9, final_loss=0.3, diverged=False, **cubist.masks.mask_counts(masks))
    row = make_row(config, masks=masks, weights=None, metrics=metrics, engine="test", wall_time_s=0.0)
    cubist.ResultStore(tmp_path / "store").write([row])
    return row, widths, masks, np


def test_retrain_prints_the_mask_from_init(tmp_path, capsys):
    import cubist
    row, widths, masks, np = _spiral_row(tmp_path)
    argv = ["search", "retrain", str(tmp_path / "store"), "--run-id", row["run_id"][:6], "--epochs", "1",
            "--lrs", "0.1", "--schedules", "constant", "--seeds", "2", "--details", "--target", "0.6"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"run {row['run_id']}: mask 2-2-1-2-1, 9 weights" in out and "train accuracy 0.9000" in out
    data = cubist.Dataset.spiral()
    accs = []
    for seed in (0, 1):
        model = cubist.MaskedMLP(widths, masks, init_width=16, seed=seed)
        ref = cubist.train_reference(model, data.X, data.y,
                                     cubist.TrainConfig(lr=0.1, schedule="constant", epochs=1, seed=seed), device="cpu")
        accs.append(ref.train_acc)
        line = next(ln for ln in out.splitlines() if ln.startswith("  lr") and f"constant seed {seed}:" in ln)
        assert float(line.split()[-1]) == pytest.approx(ref.train_acc, abs=2e-3)
    summary = next(ln for ln in out.splitlines() if "its mask from init (2 runs): best" in ln)
    assert float(summary.split("best ")[1].split(",")[0]) == pytest.approx(max(accs), abs=2e-3)
    assert summary.endswith(f"{sum(a >= 0.6 for a in accs)} reach 0.6")


def test_retrain_out_keeps_the_runs_for_the_audit(tmp_path, capsys):
    """``--out``: the retrained runs become rows of kind search_retrain (the printed verdict is
    theirs); a second call trains nothing and stores nothing twice."""
    import cubist
    row, widths, masks, np = _spiral_row(tmp_path)
    argv = ["search", "retrain", str(tmp_path / "store"), "--run-id", row["run_id"][:6], "--epochs", "1",
            "--lrs", "0.1", "--schedules", "constant", "--seeds", "2", "--details", "--target", "0.6",
            "--out", str(tmp_path / "retrain")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    kept = cubist.ResultStore(tmp_path / "retrain").load()
    assert len(kept) == 2 and set(kept["kind"]) == {"search_retrain"} and set(kept["method"]) == {"retrain"}
    assert all(bytes(b) == bytes(row["mask_bits"]) for b in kept["mask_bits"])
    for seed in (0, 1):
        line = next(ln for ln in out.splitlines() if ln.startswith("  lr") and f"constant seed {seed}:" in ln)
        assert line.split()[-1] == f"{kept.loc[kept['seed'] == seed, 'train_acc'].iloc[0]:.4f}"
    assert f"rows in {tmp_path / 'retrain'}" in out
    assert main(argv) == 0 and len(cubist.ResultStore(tmp_path / "retrain").load()) == 2
    assert capsys.readouterr().out == out


@pytest.mark.parametrize("argv, needle", [
    (["--run-id", "ffffffff"], "unknown run id ffffffff"),
    (["--run-id", "x", "--lrs", "0"], "lr must be positive"),
])
def test_retrain_bad_input(tmp_path, capsys, argv, needle):
    _spiral_row(tmp_path)
    assert main(["search", "retrain", str(tmp_path / "store")] + argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_retrain_refuses_runs_on_other_data(tmp_path, capsys):
    from handmade import W3, full_mask, row, write_store
    r = row("search_masks", "mask", W3, full_mask(W3), 0.9)
    write_store(tmp_path / "h", [r])
    assert main(["search", "retrain", str(tmp_path / "h"), "--run-id", r["run_id"], "--epochs", "1"]) == 2
    assert "was trained on data set handmade" in capsys.readouterr().err
