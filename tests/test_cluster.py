"""Sweeps on a real cluster from the command line (``--backend dask|ray``): the rows equal a loky run.

A ``dask scheduler`` and two ``dask worker`` processes are started on loopback for the module
(and killed at its end, whatever happens); a phase-2 search and a prune sweep run through the CLI
on them and on loky, and every row (run id, accuracies, loss, weights) must be equal. One worker is
killed while a sweep runs: the sweep still ends with every run stored once. Ray runs on a local
Ray instance when Ray is installed (the ``ray`` extra), and skips saying so when it is not.
"""
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import cubist
from cubist.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"

distributed = pytest.importorskip("distributed", reason="the dask extra (dask[distributed]) is not installed")

GRID = ["--epochs", "2", "--lrs", "0.1", "--schedules", "cosine", "--seeds", "2"]
SEARCH = ["search", "masks", "--widths", "2,1,2", "--max-nnz", "9", *GRID, "--quiet"]
PRUNE = ["prune", "--method", "gmp", "--widths", "3,3,3", "--nnz", "12", *GRID, "--device", "cpu", "--quiet"]
# long enough that a chunk is on the worker killed: 44 runs in chunks of 2
# long enough (chunks of ~0.1 s) for the test to see a worker busy with a chunk and kill it there
LONG = ["search", "masks", "--widths", "2,2,2", "--max-nnz", "10", "--epochs", "150", "--lrs", "0.1",
        "--schedules", "cosine", "--seeds", "2", "--chunk-size", "2", "--quiet"]
COLUMNS = ("run_id", "train_acc", "heldout_acc", "final_loss", "diverged", "mask_bits", "weights", "init_seed")


def _start(argv, cwd, log):
    # a session of its own: killpg takes the nanny and the worker process it spawned
    return subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _kill(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-threaded workers on 127.0.0.1: (address, scheduler file, {name: Popen})."""
    d = tmp_path_factory.mktemp("dask")
    sched_file = d / "scheduler.json"
    log = open(d / "cluster.log", "wb")
    procs = []
    try:
        procs.append(_start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                             "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)], d, log))
        workers = {}
        for name in ("w0", "w1"):
            workers[name] = _start([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                    str(sched_file), "--nworkers", "1", "--nthreads", "1", "--name", name,
                                    "--no-dashboard", "--local-directory", str(d)], d, log)
            procs.append(workers[name])
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with distributed.Client(scheduler_file=str(sched_file), timeout=30) as c:
            c.wait_for_workers(2, timeout=60)
            address = c.scheduler.address
        yield address, str(sched_file), workers
    finally:
        for p in procs:
            _kill(p)
        log.close()


def _rows(path) -> dict:
    df = cubist.ResultStore(path).load(list(COLUMNS[1:]))
    return {r["run_id"]: r for r in df.to_dict("records")}


def _assert_same(a, b, n=None):
    assert a.keys() == b.keys() and (n is None or len(a) == n)
    for k in a:
        for c in COLUMNS[1:]:
            assert a[k][c] == b[k][c], (k, c)


def _shard_run_ids(path) -> list:
    return [i for f in sorted(os.listdir(path)) if f.startswith("part-") and f.endswith(".parquet")
            for i in pq.read_table(os.path.join(path, f), columns=["run_id"]).column("run_id").to_pylist()]


@pytest.fixture(scope="module")
def loky(tmp_path_factory):
    """The reference: the search and the prune sweep on loky with 2 workers."""
    d = tmp_path_factory.mktemp("loky")
    assert main([*SEARCH, "--jobs", "2", "--out", str(d / "search")]) == 0
    assert main([*PRUNE, "--jobs", "2", "--out", str(d / "prune")]) == 0
    return d


def test_search_on_dask_equals_loky(cluster, loky, tmp_path, capsys):
    address, _, _ = cluster
    assert main([*SEARCH, "--backend", "dask", "--scheduler", address, "--out", str(tmp_path / "s")]) == 0
    assert "trained 6 runs" in capsys.readouterr().out
    _assert_same(_rows(loky / "search"), _rows(tmp_path / "s"), 6)


def test_local_dask_cluster_equals_loky_with_single_threaded_workers(loky, tmp_path, capsys):
    """--backend dask without --scheduler: a local cluster for the sweep, of single-threaded worker
    processes with one numba thread each, without dask's MALLOC_TRIM_THRESHOLD_ (its other
    pre-spawn variables kept); dask's own config is left as it was."""
    import dask

    from cubist.dispatch import LOCAL_CLUSTER_CONFIG, NANNY_ENV, local_dask_cluster
    before = dict(dask.config.get(NANNY_ENV))
    assert "MALLOC_TRIM_THRESHOLD_" in before   # dask's default: what the cluster leaves out
    settings = [k for k in LOCAL_CLUSTER_CONFIG if not k.startswith(NANNY_ENV)]
    defaults = {k: dask.config.get(k) for k in settings}
    with local_dask_cluster(2) as lc, distributed.Client(lc) as client:
        seen = client.run(lambda: tuple(os.environ.get(k) for k in
                                        ("NUMBA_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")))
        assert list(seen.values()) == [("1", None, "1")] * 2 and set(client.nthreads().values()) == {1}
        worker_cfg = client.run(lambda: {k: dask.config.get(k) for k in settings})
        assert list(worker_cfg.values()) == [{k: LOCAL_CLUSTER_CONFIG[k] for k in settings}] * 2
        assert [n.memory_manager.memory_monitor_interval for n in lc.workers.values()] == [1.0, 1.0]   # nannies
        assert not client.run_on_scheduler(lambda dask_scheduler: "stealing" in dask_scheduler.extensions)
        assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler._tick_interval) == 1.0
    assert dask.config.get(NANNY_ENV) == before and {k: dask.config.get(k) for k in settings} == defaults
    assert main([*SEARCH, "--jobs", "2", "--backend", "dask", "--out", str(tmp_path / "s")]) == 0
    assert "trained 6 runs" in capsys.readouterr().out
    _assert_same(_rows(loky / "search"), _rows(tmp_path / "s"), 6)


def test_readme_worker_variables_unset_dasks_malloc_trim():
    """The README's worker-host line: dask's nannies then start workers without
    MALLOC_TRIM_THRESHOLD_ and keep their other pre-spawn variables."""
    line = next(l for l in README.read_text().splitlines() if l.startswith("export NUMBA_NUM_THREADS=1 DASK_"))
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in shlex.split(line)[1:])
    code = ("from distributed.nanny import _get_env_variables as g; "
            "print(sorted(g('distributed.nanny.pre-spawn-environ')))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "MALLOC_TRIM_THRESHOLD_" not in out and "OMP_NUM_THREADS" in out and env["NUMBA_NUM_THREADS"] == "1"


def test_prune_on_dask_equals_loky(cluster, loky, tmp_path):
    _, sched_file, _ = cluster   # --scheduler also takes the scheduler's --scheduler-file
    out = tmp_path / "p"
    assert main([*PRUNE, "--jobs", "2", "--backend", "dask", "--scheduler", sched_file, "--out", str(out)]) == 0
    _assert_same(_rows(loky / "prune"), _rows(out), 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv,needle", [
    (["--backend", "dask", "--scheduler", f"tcp://127.0.0.1:{_free_port()}"], "cannot reach the scheduler"),
    (["--backend", "dask", "--scheduler", "tcp://127.0.0.1"], "not an address"),
    (["--backend", "ray", "--scheduler", f"127.0.0.1:{_free_port()}"], "cannot reach the scheduler"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler applies to --backend dask or ray"),
    (["--backend", "spark"], "invalid choice"),
])
@pytest.mark.parametrize("command", [SEARCH, PRUNE])
def test_bad_backend_is_one_line_before_any_work(tmp_path, capsys, command, argv, needle):
    if "ray" in argv:
        pytest.importorskip("ray", reason="Ray is not installed (pip install 'cubist-audit[ray]')")
    out = tmp_path / "out"
    assert main([*command, *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("backend,package", [("dask", "distributed"), ("ray", "ray")])
def test_missing_backend_package(tmp_path, capsys, monkeypatch, backend, package):
    monkeypatch.setitem(sys.modules, package, None)   # import fails as if not installed
    out = tmp_path / "out"
    assert main([*SEARCH, "--backend", backend, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--backend {backend} needs" in err and f"cubist-audit[{backend}]" in err and err.count("\n") == 1
    assert not out.exists()


def test_ray_equals_loky(loky, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'cubist-audit[ray]'; no wheel for "
                                      "some platforms and Python versions)")
    assert main([*PRUNE, "--jobs", "2", "--backend", "ray", "--out", str(tmp_path / "p")]) == 0
    _assert_same(_rows(loky / "prune"), _rows(tmp_path / "p"), 2)


def test_worker_killed_mid_sweep_finishes_with_every_run(cluster, tmp_path):
    """Runs last in this module: it leaves the cluster one worker."""
    address, _, workers = cluster
    ref, out = tmp_path / "ref", tmp_path / "killed"
    assert main([*LONG, "--jobs", "1", "--out", str(ref)]) == 0
    sweep = subprocess.Popen([sys.executable, "-m", "cubist.cli", *LONG, "--backend", "dask", "--scheduler", address,
                              "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with distributed.Client(address, timeout=30) as c:
            victim = next(a for a, w in c.scheduler_info(n_workers=-1)["workers"].items() if w["name"] == "w1")
            deadline = time.monotonic() + 60
            while not c.processing().get(victim) and time.monotonic() < deadline and sweep.poll() is None:
                time.sleep(0.02)
            assert c.processing().get(victim), "the sweep never gave w1 a chunk"
            _kill(workers["w1"])   # the worker dies with its chunk
        text, _ = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 0, text.decode()[-2000:]
    assert b"trained 44 runs" in text
    expected = _rows(ref)
    _assert_same(expected, _rows(out), 44)
    ids = _shard_run_ids(out)
    assert len(ids) == len(set(ids)) == 44   # every run stored once, none twice
