"""What every ``cubist`` command shares: the user-facing error, list parsers, common flags, the
command table (names and one-line help, so ``cubist --help`` imports no command module).

Conventions shared by all subcommands: the fields of a command's config are its flags, generated
by :func:`config_flags` with the config's own defaults (so no default is typed twice); beside
them (:func:`add_common`) ``--out DIR`` for the result store written (default
``results/runs``), ``--device auto|cpu|cuda``, ``--jobs N``, ``--backend loky|dask|ray`` and
``--scheduler ADDRESS`` (where a sweep's chunks run: :func:`sweep_backend`), ``--quiet``. List
flags take comma-separated values (``--lrs 0.05,0.1``), booleans are ``--x/--no-x``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os

DEFAULT_STORE = os.path.join("results", "runs")


class CubistError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)   # `--heldout` must never be read as `--heldout-noise`
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, no usage dump
        raise CubistError(f"{message} (see '{self.prog} --help')")


def csv(kind=str, choices=None, minimum=None):
    """argparse type: comma-separated values of ``kind`` (optionally restricted)."""
    def parse(text: str):
        try:
            values = [kind(v) for v in text.split(",") if v.strip() != ""]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}")
        if not values:
            raise argparse.ArgumentTypeError("expected at least one value")
        for v in values:
            if choices is not None and v not in choices:
                raise argparse.ArgumentTypeError(f"{v!r} is not one of {', '.join(map(str, choices))}")
            if minimum is not None and v < minimum:
                raise argparse.ArgumentTypeError(f"{v!r} is below the minimum {minimum}")
        return values
    parse.__name__ = f"list of {kind.__name__}"
    return parse


def number(kind, ok, what: str):
    """argparse type: one ``kind`` value for which ``ok`` holds (``what`` names it in errors)."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{v:g} is not {what}")
        return v
    parse.__name__ = what
    return parse


positive_int = number(int, lambda v: v >= 1, "a positive integer")
accuracy = number(float, lambda v: 0 < v <= 1, "an accuracy in (0, 1]")


def add_target(p, *, many: bool = False, text: str = "train accuracy to reach"):
    """``--target ACC`` (``many``: ``ACC[,ACC...]``), default the paper's 0.95
    (:data:`cubist.stats.DEFAULT_TARGET`)."""
    from cubist.stats import DEFAULT_TARGET
    if many:
        p.add_argument("--target", type=lambda t: [accuracy(v) for v in t.split(",") if v.strip()],
                       default=[DEFAULT_TARGET], metavar="ACC[,ACC...]", help=f"{text} (default {DEFAULT_TARGET:g})")
    else:
        p.add_argument("--target", type=accuracy, default=DEFAULT_TARGET, metavar="ACC",
                       help=f"{text} (default {DEFAULT_TARGET:g})")


def add_common(p, *, store=True, device=True, jobs=True, backend=None):
    """The flags every sweep command shares that are not fields of a config (where the rows go,
    where torch runs, how many workers and where, progress). ``backend`` (default: with ``jobs``)
    adds ``--backend`` and ``--scheduler``; such a command opens :func:`sweep_backend` around its
    sweep, which also settles ``--jobs``."""
    backend = jobs if backend is None else backend
    if store:
        p.add_argument("--out", default=DEFAULT_STORE, metavar="DIR",
                       help=f"result store directory to write (default {DEFAULT_STORE})")
    if device:
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="where torch runs (default auto: CUDA when available)")
    if jobs and backend:
        p.add_argument("--jobs", type=positive_int, default=None,
                       help="loky: worker processes (default: all cores); dask, ray: chunks on the cluster at "
                            "once (default: every worker thread of the cluster; without --scheduler, the worker "
                            "processes of the local cluster started, default all cores)")
    elif jobs:
        p.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1,
                       help="parallel workers (default: all cores)")
    if backend:
        p.add_argument("--backend", choices=BACKENDS, default="loky",
                       help="where chunks run: loky (worker processes on this machine, the default), dask or "
                            "ray (a cluster; results are still written here, by this process)")
        p.add_argument("--scheduler", metavar="ADDRESS",
                       help="dask: a running scheduler (tcp://host:port, or a --scheduler-file); ray: the "
                            "cluster's address (host:port, ray://host:port or auto). Default: start a local "
                            "cluster of --jobs single-threaded worker processes for the sweep")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# -- where a sweep's chunks run --------------------------------------------------------------
BACKENDS = ("loky", "dask", "ray")
CONNECT_TIMEOUT_S = 10  # how long to try a --scheduler before the one-line error


@contextlib.contextmanager
def sweep_backend(args):
    """Open the joblib backend of ``--backend``/``--scheduler`` for the sweep run inside; yields
    the ``jobs`` to pass to the engine (``--jobs`` settled for the backend).

    The engines cut the same deterministic chunks whatever the backend and send them through
    ``joblib.Parallel`` under this ``joblib.parallel_config``; rows come back to this process,
    which writes them to the store as chunks return (workers need no shared filesystem, only the
    same ``cubist-audit`` installed). Each chunk runs with one numba / torch thread
    (``inner_max_num_threads=1`` on loky; dask and ray workers get their threads from the cluster:
    start them with one thread per process). Errors (package missing, scheduler unreachable, no
    workers, workers that cannot import cubist) are :class:`CubistError` raised before any work.
    """
    backend, address = getattr(args, "backend", "loky"), getattr(args, "scheduler", None)
    if backend == "loky":
        if address:
            raise CubistError("--scheduler applies to --backend dask or ray, not loky")
        from joblib import parallel_config
        with parallel_config(backend="loky", inner_max_num_threads=1):
            yield args.jobs or os.cpu_count() or 1
    elif backend == "dask":
        with _dask(address, args.jobs) as (client, slots):
            from joblib import parallel_config
            with parallel_config(backend="dask", client=client):
                yield args.jobs or slots
    elif backend == "ray":
        with _ray(address, args.jobs) as slots:
            from joblib import parallel_config
            with parallel_config(backend="ray"):
                yield args.jobs or slots
    else:
        raise CubistError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")


def _check_reachable(address: str, what: str) -> None:
    """A TCP connect to ``host:port`` of ``address`` (schemes ``tcp://``, ``ray://`` or none)."""
    import socket
    from urllib.parse import urlsplit
    hostport = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = hostport.hostname, hostport.port
    except ValueError:
        raise CubistError(f"--scheduler {address}: not an address (expected {what})") from None
    if not host or not port:
        raise CubistError(f"--scheduler {address}: not an address (expected {what})")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise CubistError(f"cannot reach the scheduler at {address}: {e.strerror or e}") from None


def worker_probe() -> str:
    """Run on every worker before a sweep: the engines import and the package version."""
    import pruners.runner  # noqa: F401
    import search.phases  # noqa: F401
    from cubist.version import __version__
    return __version__


@contextlib.contextmanager
def _dask(address, jobs):
    try:
        import distributed
    except ImportError:
        raise CubistError("--backend dask needs dask.distributed: pip install 'cubist-audit[dask]'") from None
    cluster = None
    if address is None:  # a local cluster of single-threaded worker processes, for this sweep only
        from cubist.dispatch import local_dask_cluster
        cluster = local_dask_cluster(jobs or os.cpu_count() or 1)
        client = distributed.Client(cluster, set_as_default=False)
    else:
        try:
            if "://" not in address and os.path.isfile(address):
                client = distributed.Client(scheduler_file=address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            else:
                _check_reachable(address, "tcp://host:port or a scheduler file")
                client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CubistError(f"cannot reach the dask scheduler at {address}: {first}") from None
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError):
            where = f"--scheduler-file {address}" if client.scheduler_file else address
            raise CubistError(f"the dask scheduler at {address or 'the local cluster'} has no workers (start "
                              f"some with 'dask worker {where} --nthreads 1')") from None
        _check_versions(client.run(worker_probe, on_error="return"),
                        f"the dask workers of {address or 'the local cluster'}")
        yield client, sum(client.nthreads().values())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def _ray(address, jobs):
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise CubistError("--backend ray needs Ray: pip install 'cubist-audit[ray]'") from None
    if address not in (None, "auto"):
        _check_reachable(address, "host:port or ray://host:port")
    kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        if address is None:  # a new local Ray instance for this sweep only (not one found running)
            ray.init(address="local", num_cpus=jobs or os.cpu_count() or 1, **kw)
        else:
            ray.init(address=address, **kw)
    except Exception as e:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ... by version
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CubistError(f"cannot reach the Ray cluster at {address}: {first}") from None
    try:
        register_ray()
        probe = ray.remote(num_cpus=1)(worker_probe)
        try:
            versions = {"ray": ray.get(probe.remote(), timeout=60)}
        except Exception as e:  # noqa: BLE001
            versions = {"ray": e}
        _check_versions(versions, f"the Ray workers of {address or 'the local Ray instance'}")
        yield max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        ray.shutdown()


def _check_versions(found: dict, who: str) -> None:
    from cubist.version import __version__
    for worker, v in found.items():
        if isinstance(v, BaseException):
            first = (str(v).strip().splitlines() or [type(v).__name__])[0]
            raise CubistError(f"{who} cannot run cubist ({worker}: {type(v).__name__}: {first}); install "
                              f"cubist-audit {__version__} on every worker")
        if v != __version__:
            raise CubistError(f"{who} run cubist-audit {v} ({worker}), this process {__version__}: install the "
                              f"same version everywhere (rows record it)")


# -- flags from config dataclasses -------------------------------------------------------------
# The one generator of flags: a config's fields are its flags. Field metadata read: "help";
# "flag" (the flag's name when it is not the field's); "choices" (allowed values, of each element
# for a tuple); "item" (the element type of a tuple whose default is empty); "cli": False (no flag).
def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def field_argument(f: dataclasses.Field, *, default=dataclasses.MISSING, dest: str | None = None,
                   unset: bool = False, choices=None, suffix: str = "") -> tuple[str, dict]:
    """``(flag, add_argument keywords)`` of one config field.

    The type follows the default: a bool is ``--x/--no-x``; a tuple takes comma-separated values
    of its elements' type (returned as a tuple); int, float and str are plain. ``default``
    overrides the field's own default for one command; ``unset`` makes the flag's default None
    (the field keeps its config default unless the flag is given).
    """
    if default is dataclasses.MISSING:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    flag = "--" + f.metadata.get("flag", f.name).replace("_", "-")
    choices = choices if choices is not None else f.metadata.get("choices")
    text = f.metadata.get("help", "")
    kw = {"dest": dest or f.name, "default": None if unset else default}
    if isinstance(default, bool):
        kw["action"] = argparse.BooleanOptionalAction
    elif isinstance(default, tuple):
        item = f.metadata.get("item") or (type(default[0]) if default else str)
        parse = csv(item, choices=choices)
        kw["type"] = lambda text, parse=parse: tuple(parse(text))
        kw["metavar"] = (",".join(choices) if choices else f"{item.__name__.upper()}[,...]")
    else:
        kw["type"] = type(default) if default is not None else str
        if choices:
            kw["choices"] = list(choices)
        else:
            kw["metavar"] = kw["type"].__name__.upper()
    kw["help"] = f"{text} (default {_show(default)}){suffix}" if not unset else f"{text}{suffix}"
    return flag, kw


def config_flags(p, cls, *, only=None, exclude=(), defaults=None, choices=None) -> list[str]:
    """Add one flag per field of the config dataclass ``cls`` (see :func:`field_argument`); the
    field's default is the flag's, unless ``defaults`` names another for this command. Returns
    the names of the fields that got a flag."""
    defaults, choices = defaults or {}, choices or {}
    names = []
    for f in dataclasses.fields(cls):
        if f.name in exclude or (only is not None and f.name not in only) or not f.metadata.get("cli", True):
            continue
        flag, kw = field_argument(f, default=defaults.get(f.name, dataclasses.MISSING), choices=choices.get(f.name))
        p.add_argument(flag, **kw)
        names.append(f.name)
    return names


def add_method_flags(p) -> None:
    """Every registered method's config fields as flags (``m_<field>``), in one group: what
    ``cubist prune`` and ``cubist imagenet`` share."""
    from pruners.base import load_methods
    mg = p.add_argument_group("method hyper-parameters (each applies to the methods listed)")
    union_flags(mg, {name: cls.Config for name, cls in load_methods().items()}, dest_prefix="m_",
                everyone="all methods")


def union_flags(p, configs: dict, *, dest_prefix: str, everyone: str) -> dict[str, list[str]]:
    """Flags for the union of the fields of several configs (``{name: dataclass}``, e.g. every
    method's config), each once, with the configs taking it named in its help (each config's own
    help where they differ); a flag's value is None unless given (dest ``dest_prefix + field``).
    Returns field -> names of the configs taking it."""
    fields: dict[str, list[tuple[str, dataclasses.Field]]] = {}
    for name, cls in sorted(configs.items()):
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli", True):
                fields.setdefault(f.name, []).append((name, f))
    for fname, owners in fields.items():
        takers = [name for name, _ in owners]
        who = ", ".join(takers) if len(takers) < len(configs) else everyone
        helps = {f.metadata.get("help", "") for _, f in owners}
        text = (None if len(helps) == 1 else
                "; ".join(f"{name}: {f.metadata.get('help', '')}" for name, f in owners))
        f = owners[0][1]
        if text is not None:
            f = dataclasses.field(default=f.default, metadata={**f.metadata, "help": text})
            f.name = fname
        flag, kw = field_argument(f, dest=dest_prefix + fname, unset=True, suffix=f" [{who}]")
        p.add_argument(flag, **kw)
    return {fname: [name for name, _ in owners] for fname, owners in fields.items()}


def given_fields(args, dest_prefix: str, accepted, owner: str) -> dict:
    """The values of the :func:`union_flags` flags given on the command line; one that ``owner``'s
    config does not take (``accepted``: its field names) is a :class:`CubistError`."""
    values = {}
    for key, value in vars(args).items():
        if key.startswith(dest_prefix) and value is not None:
            name = key[len(dest_prefix):]
            if name not in accepted:
                raise CubistError(f"--{name.replace('_', '-')} does not apply to {owner}")
            values[name] = value
    return values


def default_of(func, name: str):
    """The default of parameter ``name`` of ``func``: a flag for a library argument takes it from
    the function, not from a second copy."""
    import inspect
    return inspect.signature(func).parameters[name].default


def config_from_args(cls, args, **overrides):
    """The config ``cls`` from parsed flags (fields without a flag keep their defaults); a value
    the config rejects is a :class:`CubistError`."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if hasattr(args, f.name) and getattr(args, f.name) is not None}
    values.update(overrides)
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise CubistError(str(e))


def check_writable_file(path: str) -> None:
    """Fail before any work when ``path`` cannot be written as a file."""
    if os.path.isdir(path):
        raise CubistError(f"cannot write {path}: Is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CubistError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CubistError(f"cannot write {path}: permission denied")


MAX_SEEDS = 10_000          # inits per grid point a command accepts (the paper: a handful)
MAX_WIDTH = 1024            # units per layer a command accepts (the paper's widest: 256)
MAX_RUNS = 50_000_000       # runs one sweep may plan (the paper's whole study: 485,838)


def check_at_most(value: int, limit: int, flag: str, what: str = "") -> None:
    """A one-line error naming ``flag`` when ``value`` exceeds ``limit``."""
    if value > limit:
        raise CubistError(f"{flag} {value}{what} is above the limit {limit:,}")


def check_widths_arg(widths, flag: str = "--widths") -> None:
    """Every width a positive count of at most :data:`MAX_WIDTH` units."""
    for w in widths:
        check_at_most(int(w), MAX_WIDTH, flag, " (units in a layer)")


def check_store_dir(path: str, flag: str = "--out") -> None:
    """Fail before any work when ``path`` cannot be (or become) a result store directory."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CubistError(f"{flag} {path} exists and is not a directory")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise CubistError(f"cannot write {flag} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CubistError(f"cannot write {flag} {path}: permission denied on {parent}")


# -- the commands ------------------------------------------------------------------------
# Every subcommand: name -> (module exposing add_parser(sub), one-line help). The help lives here
# only (the command modules read it with command_help) so ``cubist --help`` can list every command without
# importing torch or numba; only the module of the command being run is imported.
COMMANDS = {
    "data": ("cubist.cli.data", "write the Cubist Spiral as Parquet (x1, x2, label); 'data digits': images"),
    "search": ("cubist.cli.search", "exact combinatorial search for the sparsest models"),
    "prune": ("cubist.cli.prune", "prune spiral MLPs with a method over a grid of targets (batched runs)"),
    "audit": ("cubist.cli.audit", "report: pruning against the exact sparsest models"),
    "plot": ("cubist.cli.plot", "draw runs: decision regions, network graph, switching lines"),
    "store": ("cubist.cli.store", "check or repair a result store: bad shards, duplicate rows"),
    "imagenet": ("cubist.cli.imagenet", "one pruning run on an ImageFolder data set (ImageNet) with torchrun + DDP"),
}


def command_help(name: str) -> str:
    return COMMANDS[name][1]
