"""Where a sweep's chunks run: in this process, or over joblib's active backend.

The engines (:func:`search.phases.run_chunks`, :func:`pruners.runner.run_sweep`) cut their work
into deterministic chunks and hand them to :func:`map_unordered`, which sends them through
``joblib.Parallel`` on whatever backend ``joblib.parallel_config`` made active: loky worker
processes on this machine by default, or a cluster (``"dask"`` with a ``distributed.Client``;
``"ray"`` after ``ray.util.joblib.register_ray()``). The results come back to the calling
process, which writes them, so the workers need no shared filesystem; a chunk's rows do not
depend on where it ran. The command line opens the backend (:func:`cubist.cli.common.sweep_backend`).

Stops. No loky worker outlives its driver: every worker started here runs
:func:`_watch_driver` first, which on Linux asks the kernel for SIGKILL when its parent (the
driver: loky workers are the driver's own children) dies (``prctl(PR_SET_PDEATHSIG)``; works even
while a chunk holds the GIL in numba), and on every platform starts a thread that exits the worker
once its parent is no longer the driver (it was re-parented). So ``kill -9`` of a sweep leaves no
worker computing. A driver stopped by SIGTERM or SIGINT kills its workers itself
(:func:`stop_workers`, called by :func:`cubist.cli.main`). Dask and Ray workers are the cluster's,
not the driver's: a stopped or killed driver leaves them running (as a cluster should), its chunks
in flight are dropped by the scheduler when the client disconnects, and a local cluster started
for the sweep (no ``--scheduler``) is closed with the driver on SIGTERM/SIGINT and, after
``kill -9``, by dask's own nanny / ray's own raylet checks of their parent.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading

LOCAL_BACKENDS = ("loky", "sequential", "threading", "multiprocessing")


def on_cluster() -> bool:
    """Whether joblib's active backend is a cluster (dask, ray: anything but this machine's pools)."""
    from joblib.parallel import BACKENDS, get_active_backend
    local = tuple(BACKENDS[n] for n in LOCAL_BACKENDS if n in BACKENDS)
    return type(get_active_backend()[0]) not in local  # exact: Ray's backend subclasses multiprocessing's


WATCH_INTERVAL_S = 0.5  # how often a worker checks that its driver is alive
PR_SET_PDEATHSIG = 1


def _watch_driver(driver_pid: int) -> None:
    """Worker initializer (runs first in every loky worker): die with the driver ``driver_pid``.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, the kernel kills this worker when its parent
    dies. Everywhere: a daemon thread polls the parent pid every :data:`WATCH_INTERVAL_S` and exits
    the process once it is not ``driver_pid`` (a watchdog for platforms without prctl, and for a
    driver that died before the prctl took effect)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog thread alone
            pass
    if os.getppid() != driver_pid:  # the driver died while this worker started
        os._exit(1)

    def watch():
        import time
        while True:
            time.sleep(WATCH_INTERVAL_S)
            if os.getppid() != driver_pid:
                os._exit(1)

    threading.Thread(target=watch, name="cubist-driver-watch", daemon=True).start()


def _is_loky(backend) -> bool:
    from joblib.parallel import BACKENDS
    return "loky" in BACKENDS and type(backend) is BACKENDS["loky"]


def _guarded_backend():
    """The backend to hand ``joblib.Parallel``: for loky, a copy of the active one (its
    ``inner_max_num_threads`` and parameters kept) whose workers run :func:`_watch_driver` first;
    any other backend: ``None`` (the active one, unchanged)."""
    from joblib.parallel import BACKENDS, get_active_backend
    backend = get_active_backend()[0]
    if not _is_loky(backend):
        return None
    params = dict(getattr(backend, "backend_kwargs", {}) or {})
    params.update(initializer=_watch_driver, initargs=(os.getpid(),))
    return BACKENDS["loky"](inner_max_num_threads=backend.inner_max_num_threads, **params)


def stop_workers() -> None:
    """Kill this process's loky workers now (a stopped driver: SIGTERM, SIGINT); a no-op where
    none were started. Cluster workers (dask, ray) are left to their cluster."""
    if "joblib.externals.loky" not in sys.modules:
        return
    try:
        from joblib.externals.loky.reusable_executor import _executor
        if _executor is not None:
            _executor.shutdown(wait=False, kill_workers=True)
    except Exception:  # already broken or shutting down: its workers are going anyway
        pass
    try:  # and any worker not in the executor any more (a pool being replaced)
        import multiprocessing
        for child in multiprocessing.active_children():
            child.kill()
    except Exception:
        pass


def map_unordered(func, tasks, jobs: int):
    """Yield ``func(*task)`` for every task (a tuple of arguments) as the tasks finish, over joblib's
    active backend with ``n_jobs=jobs``.

    On a cluster at most ``jobs`` tasks are out at once (the cluster itself may run more workers).
    A backend that cannot return results as they finish (Ray's) gets the tasks in waves of
    ``2 * jobs``, each wave's results yielded when the wave ends, so a stop loses at most one wave.
    """
    from joblib import Parallel, delayed
    from joblib.parallel import get_active_backend
    jobs = max(1, int(jobs))
    cluster = on_cluster()
    backend = _guarded_backend()  # loky: workers that die with this process
    calls = (delayed(func)(*t) for t in tasks)
    if getattr(get_active_backend()[0], "supports_return_generator", False):
        par = Parallel(n_jobs=jobs, backend=backend, return_as="generator_unordered",
                       pre_dispatch=jobs if cluster else "2*n_jobs")
        yield from par(calls)
        return
    # n_jobs=1 would make joblib train in this process: a cluster gets a pool of 2 fed one task at a time
    n_jobs = max(2, jobs) if cluster else jobs
    wave = 2 * jobs if jobs > 1 else 1
    with Parallel(n_jobs=n_jobs, backend=backend) as par:
        while True:
            batch = list(itertools.islice(calls, wave))
            if not batch:
                return
            yield from par(batch)


def local_dask_cluster(n_workers: int):
    """A ``distributed.LocalCluster`` for one sweep: ``n_workers`` worker processes of one thread
    and one numba thread each (each trains one chunk at a time; more numba threads per worker would
    oversubscribe the cores; measured in ``bench/scale_out.py``), logs silenced, no dashboard.

    Configured (:data:`LOCAL_CLUSTER_CONFIG`) to leave the cores to the chunks:

    - the workers start without dask's default ``MALLOC_TRIM_THRESHOLD_=65536``
      (``distributed.nanny.pre-spawn-environ``): setting it turns off glibc's adaptive mmap
      threshold, so every array of 128 KiB or more the engine allocates is a fresh ``mmap`` (page
      faults on first touch) and every free an ``munmap``; a process trained 9% slower with it;
    - the scheduler and the nannies live in this process, beside the driver, and wake up on
      timers (the event-loop tick every 20 ms, the system monitor every 0.5 s, the nannies'
      memory monitor every 0.1 s, work stealing every 0.1 s): on a machine with as many workers
      as cores every wake-up is taken from a worker. Ticks and monitors run at 1-2 s here and
      work stealing is off (the chunks are alike and queued on the scheduler; a lost worker's
      chunks are rescheduled without it): 3% faster on ``bench/scale_out.py``'s slice (7
      alternating pairs, README).

    Workers of a cluster of your own: see the README's cluster section.
    """
    import logging

    import dask
    import distributed
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR,
                                        env={"NUMBA_NUM_THREADS": "1"})


NANNY_ENV = "distributed.nanny.pre-spawn-environ"
LOCAL_CLUSTER_CONFIG = {
    f"{NANNY_ENV}.MALLOC_TRIM_THRESHOLD_": None,   # None: not set (dask's rule)
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing": False,
}


__all__ = ["on_cluster", "map_unordered", "stop_workers", "local_dask_cluster"]
