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
    ref = cubist.init_params((2, 16, 16, 16, 1), 16, 3)
    sliced = init.sliced((2, 3, 3, 3, 1))
    for (w, b), (rw, rb) in zip(sliced, ref):
        assert (w == rw.numpy()[:w.shape[0], :w.shape[1]]).all() and (b == rb.numpy()[:b.shape[0]]).all()


@pytest.mark.parametrize("argv,needle", [
    (["search", "masks", "--widths", "3,x"], "expected comma-separated int"),
    (["search", "masks", "--widths", "3,3,3", "--target", "1.5"], "accuracy in (0, 1]"),
    (["search", "masks", "--widths", "3,3,3", "--schedules", "linear"], "is not one of"),
    (["search", "masks", "--widths", "3,3,3", "--exhaustive", "--max-nnz", "20"], "not allowed with"),
    (["search", "masks", "--widths", "3,3,3", "--init-checkpoint", "missing.pt"], "cannot read init checkpoint"),
    (["search", "masks", "--widths", "3,3,3", "--lrs", "-1"], "below the minimum"),
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
