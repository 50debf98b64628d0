"""``cubist imagenet``: bad input is one line and exit status 2 before any training."""
import os

import pytest

from cubist.cli import main
from imagenet_helpers import tiny_image_folder

BASE = ["--arch", "small_cnn", "--method", "gmp", "--epochs", "1", "--batch-size", "8", "--image-size", "8",
        "--augment", "none", "--workers", "0", "--score-pool", "8", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_image_folder(tmp_path_factory.mktemp("t"), classes=2, train=8, val=2, size=8)


def run(capsys, *args):
    code = main(["imagenet", *args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("case, args, words", [
    ("missing data", ["--data", "/nonexistent/imagenet"], "no such directory"),
    ("unknown arch", ["--arch", "resnet5000"], "unknown architecture 'resnet5000'"),
    ("density 0", ["--target-density", "0"], "not in (0, 1]"),
    ("density 1.5", ["--target-density", "1.5"], "not in (0, 1]"),
    ("unknown method", ["--method", "magic"], "invalid choice: 'magic'"),
    ("flag of another method", ["--rate", "0.3"], "--rate does not apply to method gmp"),
    ("unknown preset", ["--preset", "nope"], "unknown preset 'nope'"),
    ("preset of another method", ["--preset", "rigl"], "preset rigl is for method rigl, not gmp"),
])
def test_bad_input_is_one_line(case, args, words, data, tmp_path, capsys):
    argv = ["--data", data, *BASE, "--out", str(tmp_path / "out"), *args]
    code, err = run(capsys, *argv)
    assert code == 2 and len(err) == 1 and words in err[0], (case, err)
    assert not os.path.exists(tmp_path / "out" / "checkpoints")


def test_malformed_data_directories(tmp_path, capsys):
    (tmp_path / "a" / "train" / "x").mkdir(parents=True)
    code, err = run(capsys, "--data", str(tmp_path / "a"), *BASE)
    assert code == 2 and len(err) == 1 and "no val/ directory" in err[0]
    (tmp_path / "a" / "val" / "y").mkdir(parents=True)
    code, err = run(capsys, "--data", str(tmp_path / "a"), *BASE)
    assert code == 2 and len(err) == 1 and "different classes" in err[0]
    (tmp_path / "b" / "train" / "x").mkdir(parents=True)
    (tmp_path / "b" / "val" / "x").mkdir(parents=True)
    code, err = run(capsys, "--data", str(tmp_path / "b"), *BASE)   # class folders without images
    assert code == 2 and len(err) == 1 and "--data" in err[0]


def test_a_resume_checkpoint_of_another_configuration_is_refused(data, tmp_path, capsys, one_thread):
    ck = str(tmp_path / "ck")
    args = ["--data", data, *BASE, "--out", str(tmp_path / "out"), "--checkpoint-dir", ck]
    assert main(["imagenet", *args]) == 0
    capsys.readouterr()
    code, err = run(capsys, *args, "--lr", "0.2", "--resume")
    assert code == 2 and len(err) == 1 and "checkpoint of another configuration" in err[0]
    # the same configuration: a finished run resumes to nothing new
    assert main(["imagenet", *args, "--resume"]) == 0
