"""results/run_fixed_init.sh's prune stage on a reduced grid (PRUNE_GRID=a matrix store): each variant
runs at the one grid point that store froze for it, every run from the saved init; PRUNE_AT picks the
architectures."""
import json
import os
import shutil
import subprocess
import sys

from cubist.store import ResultStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_script(env):
    done = subprocess.run(["bash", os.path.join(ROOT, "results", "run_fixed_init.sh")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def test_prune_stage_runs_each_variant_at_its_frozen_point(tmp_path):
    out, grid = tmp_path / "fi", tmp_path / "op"
    out.mkdir()
    grid.mkdir()
    shutil.copy(os.path.join(ROOT, "results", "fixed_init", "init_333.pt"), out / "init_333.pt")
    frozen = json.load(open(os.path.join(ROOT, "results", "overparam", "reduced_grid.json")))
    assert (frozen["gmp"]["lr"], frozen["gmp"]["schedule"]) != (0.2, "step")
    frozen["gmp"].update(lr=0.2, schedule="step")   # not the committed point: the script must read this file
    (grid / "reduced_grid.json").write_text(json.dumps(frozen))
    env = dict(os.environ, OUT=str(out), STAGES="prune", PRUNE_GRID=str(grid), METHODS="gmp", NNZ="20",
               SEEDS="1", EPOCHS="1", JOBS="1", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    done = _run_script(env)
    assert done.stdout.count("--lrs 0.2 --schedules step --seeds 1 --epochs 1") == 2, done.stdout
    df = ResultStore(str(out / "prune")).load()
    assert sorted(tuple(w) for w in df["widths"]) == [(2, 3, 3, 3, 1), (2, 16, 16, 16, 1)]
    assert set(df["lr"]) == {0.2} and set(df["schedule"]) == {"step"} and set(df["target_nnz"]) == {20}
    assert set(df["init"]) == {"checkpoint:91da1f65c686a936"}
    assert (df["weight_nnz"] == 20).all()

    env.update(OUT=str(tmp_path / "fi8"), PRUNE_AT="8")   # one architecture only: equal widths 8
    (tmp_path / "fi8").mkdir()
    shutil.copy(out / "init_333.pt", tmp_path / "fi8" / "init_333.pt")
    done = _run_script(env)
    assert done.stdout.count("== prune gmp --width 8 from") == 1 and "--widths" not in done.stdout, done.stdout
    df = ResultStore(str(tmp_path / "fi8" / "prune")).load()
    assert [tuple(w) for w in df["widths"]] == [(2, 8, 8, 8, 1)]
