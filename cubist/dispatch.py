"""Where a sweep's chunks run: in this process, or over joblib's active backend.

The engines (:func:`search.phases.run_chunks`, :func:`pruners.runner.run_sweep`) cut their work
into deterministic chunks and hand them to :func:`map_unordered`, which sends them through
``joblib.Parallel`` on whatever backend ``joblib.parallel_config`` made active: loky worker
processes on this machine by default, or a cluster (``"dask"`` with a ``distributed.Client``;
``"ray"`` after ``ray.util.joblib.register_ray()``). The results come back to the calling
process, which writes them, so the workers need no shared filesystem; a chunk's rows do not
depend on where it ran. The command line opens the backend (:func:`cubist.cli.common.sweep_backend`).
"""
from __future__ import annotations

import itertools

LOCAL_BACKENDS = ("loky", "sequential", "threading", "multiprocessing")


def on_cluster() -> bool:
    """Whether joblib's active backend is a cluster (dask, ray: anything but this machine's pools)."""
    from joblib.parallel import BACKENDS, get_active_backend
    local = tuple(BACKENDS[n] for n in LOCAL_BACKENDS if n in BACKENDS)
    return type(get_active_backend()[0]) not in local  # exact: Ray's backend subclasses multiprocessing's


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
    calls = (delayed(func)(*t) for t in tasks)
    if getattr(get_active_backend()[0], "supports_return_generator", False):
        par = Parallel(n_jobs=jobs, return_as="generator_unordered", pre_dispatch=jobs if cluster else "2*n_jobs")
        yield from par(calls)
        return
    # n_jobs=1 would make joblib train in this process: a cluster gets a pool of 2 fed one task at a time
    n_jobs = max(2, jobs) if cluster else jobs
    wave = 2 * jobs if jobs > 1 else 1
    with Parallel(n_jobs=n_jobs) as par:
        while True:
            batch = list(itertools.islice(calls, wave))
            if not batch:
                return
            yield from par(batch)


__all__ = ["on_cluster", "map_unordered"]
