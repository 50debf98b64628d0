"""Clean stops (issue 11, item 4 and defect 4): a stopped sweep stops its workers and says so in
one line; a killed driver's workers exit within seconds; a rerun after ``kill -9`` completes the
store with exactly the expected runs, none twice.

Each sweep runs as ``python -m cubist.cli`` in a session of its own, so the processes of this
test are exactly those whose session id is the driver's pid (never other sweeps on the machine).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HIDDEN, MAX_NNZ = (3, 3, 3), 14   # 2 + 23 + 158 = 183 runs in chunks of 4 (about 10 s on 2 cores)
SWEEP = ["search", "masks", "--widths", ",".join(map(str, HIDDEN)), "--max-nnz", str(MAX_NNZ),
         "--epochs", "50", "--lrs", "0.05", "--schedules", "cosine", "--chunk-size", "4",
         "--jobs", "2", "--quiet"]
SHARDS_BEFORE_STOP = 4
WORKERS_GONE_S = 10.0


def _start(out: Path, log: Path) -> subprocess.Popen:
    # output to files, not pipes: an orphaned worker holding a pipe would hang communicate()
    return subprocess.Popen([sys.executable, "-m", "cubist.cli", *SWEEP, "--out", str(out)],
                            start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=open(log.with_suffix(".out"), "w"), stderr=open(log.with_suffix(".err"), "w"))


def _shards(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.parquet"))


def _session(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``: the driver and everything it started."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != sid:
                continue
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def _wait_for_shards(proc: subprocess.Popen, out: Path, n: int, timeout: float = 180.0) -> None:
    t0 = time.monotonic()
    while len(_shards(out)) < n:
        assert proc.poll() is None, f"the sweep ended (status {proc.returncode}) before {n} shards were stored"
        assert time.monotonic() - t0 < timeout, f"fewer than {n} shards after {timeout} s"
        time.sleep(0.1)


def _wait_gone(sid: int, timeout: float) -> list[int]:
    t0 = time.monotonic()
    while (left := _session(sid)) and time.monotonic() - t0 < timeout:
        time.sleep(0.1)
    return left


def _reap(sid: int) -> None:
    """Kill whatever of this test's session is left (a failed test leaves nothing behind)."""
    for pid in _session(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq
    rows = []
    for shard in _shards(out):
        rows += pq.read_table(shard, columns=["run_id", "params"]).to_pylist()
    return rows


def _expected_masks() -> set[str]:
    from cubist.masks import mask_key
    from search.enumerate import count_masks, enumerate_masks
    widths = (2, *HIDDEN, 1)
    return {mask_key(m) for nnz in count_masks(widths, symmetry="orbits") if nnz <= MAX_NNZ
            for m in enumerate_masks(widths, symmetry="orbits", nnz=nnz)}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_kills_workers_and_says_so(tmp_path, sig):
    out = tmp_path / "store"
    proc = _start(out, tmp_path / "sweep")
    try:
        _wait_for_shards(proc, out, SHARDS_BEFORE_STOP)
        assert len(_session(proc.pid)) > 1, "the sweep runs no worker processes"
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=30) == 128 + sig
        left = _wait_gone(proc.pid, 5.0)
        assert not left, f"processes left after {signal.Signals(sig).name}: {left}"
        err = (tmp_path / "sweep.err").read_text().strip().splitlines()
        assert err == [f"cubist: stopped by {signal.Signals(sig).name}; finished results are stored, "
                       "rerun to resume"]
        rows = _rows(out)   # what was stored before the stop is readable, each run once
        assert len(rows) >= SHARDS_BEFORE_STOP
        assert len({r["run_id"] for r in rows}) == len(rows)
    finally:
        _reap(proc.pid)


def test_kill_9_leaves_no_worker_and_rerun_completes_exactly(tmp_path):
    out = tmp_path / "store"
    proc = _start(out, tmp_path / "killed")
    try:
        _wait_for_shards(proc, out, SHARDS_BEFORE_STOP)
        workers = [p for p in _session(proc.pid) if p != proc.pid]
        assert workers, "the sweep runs no worker processes"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = _wait_gone(proc.pid, WORKERS_GONE_S)
        assert not left, f"workers of the killed driver still alive after {WORKERS_GONE_S} s: {left}"
    finally:
        _reap(proc.pid)
    stored_before = len(_rows(out))
    assert stored_before < 183, "the sweep finished before it was killed: nothing to resume"

    again = _start(out, tmp_path / "rerun")
    try:
        assert again.wait(timeout=300) == 0, (tmp_path / "rerun.err").read_text()[-2000:]
        assert not _wait_gone(again.pid, 5.0)
    finally:
        _reap(again.pid)
    rows = _rows(out)
    ids = [r["run_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a run stored twice"
    masks = [json.loads(r["params"])["mask"] for r in rows]
    expected = _expected_masks()
    assert len(expected) == 183
    assert sorted(masks) == sorted(expected)   # one grid point, one seed: one run per mask, each once
    assert "183 runs over 3 levels" in (tmp_path / "rerun.out").read_text()


# -- --jobs 1: the chunk trains in the driver, and a stop still ends it within seconds -------------
# Levels 12 and 13 (150 runs) come first, in a chunk each; then level 14, 948 runs of 100 epochs in
# one chunk (about 20-40 s here). The engine reports epochs to the driver at least every 10 epochs
# (search.phases.train_chunk), where the stop signal is handled: without that it would return to
# Python only when the whole chunk ended (100 epochs at once on one seed index).
IN_PROCESS = ["search", "masks", "--widths", "3,3,3", "--max-nnz", "14", "--epochs", "100",
              "--lrs", "0.05,0.1", "--schedules", "cosine,step,constant", "--chunk-size", "1024",
              "--jobs", "1", "--quiet"]
STOP_WITHIN_S = 6.0


def test_jobs_1_sweep_stops_within_seconds_and_keeps_its_rows(tmp_path):
    out, log = tmp_path / "store", tmp_path / "one"
    proc = subprocess.Popen([sys.executable, "-m", "cubist.cli", *IN_PROCESS, "--out", str(out)],
                            start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=open(log.with_suffix(".out"), "w"), stderr=open(log.with_suffix(".err"), "w"))
    try:
        _wait_for_shards(proc, out, 2)   # levels 12 and 13 stored: the big chunk of level 14 starts
        time.sleep(1.0)
        assert proc.poll() is None
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
        took = time.monotonic() - t0
        assert took < STOP_WITHIN_S, f"the --jobs 1 sweep took {took:.1f} s to stop"
        assert not _wait_gone(proc.pid, 5.0)
    finally:
        _reap(proc.pid)
    err = (tmp_path / "one.err").read_text().strip().splitlines()
    assert err == ["cubist: stopped by SIGTERM; finished results are stored, rerun to resume"]
    rows = _rows(out)   # the two finished levels, each run once, the stopped chunk not at all
    assert len(rows) == 150 == len({r["run_id"] for r in rows})
    assert not list((out / "_claims").iterdir())   # its claim went with it


@pytest.mark.parametrize("message", [
    "1 tasks have been successfully executed  but not used. Additionally, 4 tasks which were still being "
    "processed by the workers have been cancelled. You could benefit from adjusting the input task iterator "
    "to limit unnecessary computation time.",
    "4 tasks which were still being processed by the workers have been cancelled. You could benefit from "
    "adjusting the input task iterator to limit unnecessary computation time.",
    "2 tasks have been successfully executed  but not used. You could benefit from adjusting the input task "
    "iterator to limit unnecessary computation time.",
], ids=["finished-and-cancelled", "cancelled", "finished"])
def test_joblibs_stop_warnings_are_silenced_in_every_form(message):
    # the forms joblib's generator writes when a stop drops it (joblib.parallel._warn_exit_early); the
    # one-line stop message must stand alone on stderr whichever a stop hits
    import warnings
    from cubist.cli import quiet_joblib_stop_warning
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_joblib_stop_warning()
        warnings.warn(message, UserWarning)
        warnings.warn("some other warning", UserWarning)
    assert [str(w.message) for w in seen] == ["some other warning"]
