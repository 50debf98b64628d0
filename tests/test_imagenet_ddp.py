"""The ImageNet runner with 2 processes (torchrun, gloo) on a tiny ImageFolder with resnet18:
both ranks take part, every row is written once, and a run killed mid-epoch resumes to the same
weights as the uninterrupted run, bit for bit."""
import glob
import json
import os
import subprocess
import sys

import pytest
import torch

from cubist import ResultStore
from imagenet_helpers import tiny_image_folder

ARGS = ["--arch", "resnet18", "--method", "lrr", "--cycles", "1", "--target-density", "0.3", "--epochs", "1",
        "--batch-size", "8", "--image-size", "16", "--workers", "0", "--lr", "0.05", "--schedule", "cosine",
        "--score-pool", "16", "--quiet", "--device", "cpu"]


def launch(data, out, *extra, kill_at=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kill_at is not None:
        env["CUBIST_IMAGENET_KILL_AT_STEP"] = str(kill_at)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "pruners.imagenet", "--data", data, "--out", out, *ARGS, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def final_state(out):
    (path,) = glob.glob(os.path.join(out, "checkpoints", "*", "final.pt"))
    return torch.load(path, weights_only=False)


@pytest.mark.slow
def test_two_gloo_processes_rows_once_and_a_killed_run_resumes_bit_for_bit(tmp_path):
    data = tiny_image_folder(tmp_path / "data", classes=3, train=12, val=5, size=16)  # 15 val: odd per rank
    full = launch(data, str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-2000:]
    rows = ResultStore(str(tmp_path / "full")).load()
    # LRR with one cycle: 2 training runs of 1 epoch, a row after each epoch and a final one, each once
    assert len(rows) == 3 and rows["run_id"].is_unique
    metrics = [json.loads(m) for m in rows["metrics"]]
    assert sorted(m["stage"] for m in metrics) == ["epoch", "epoch", "final"]
    # both ranks took part: the world is 2 and every validation image was counted exactly once
    assert all(m["world_size"] == 2 and m["images"] == 15 for m in metrics)
    assert set(rows["engine"]) == {"torch-ddp-cpux2"}
    # 36 images, global batch 8: 4 steps per epoch; kill in the second epoch (after the prune)
    killed = launch(data, str(tmp_path / "kill"), kill_at=6)
    assert killed.returncode != 0
    assert glob.glob(str(tmp_path / "kill" / "checkpoints" / "*" / "last.pt"))
    assert not glob.glob(str(tmp_path / "kill" / "checkpoints" / "*" / "final.pt"))
    resumed = launch(data, str(tmp_path / "kill"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = final_state(str(tmp_path / "full")), final_state(str(tmp_path / "kill"))
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["method"] == b["method"] and a["context"]["extra"] == b["context"]["extra"]
    again = ResultStore(str(tmp_path / "kill")).load()
    assert sorted(again["run_id"]) == sorted(rows["run_id"])          # the same rows, each once
    assert sorted(again["heldout_acc"]) == sorted(rows["heldout_acc"])
