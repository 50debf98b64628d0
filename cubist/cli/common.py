"""What every ``cubist`` command shares: the user-facing error, list parsers, common flags, the
command table (names and one-line help, so ``cubist --help`` imports no command module).

Conventions shared by all subcommands: the fields of a command's config are its flags, generated
by :func:`config_flags` with the config's own defaults (so no default is typed twice); beside
them (:func:`add_common`) ``--out DIR`` for the result store written (default
``results/runs``), ``--device auto|cpu|cuda``, ``--jobs N``, ``--quiet``. List flags take
comma-separated values (``--lrs 0.05,0.1``), booleans are ``--x/--no-x``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os

DEFAULT_STORE = os.path.join("results", "runs")


class CubistError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
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


def add_common(p, *, store=True, device=True, jobs=True):
    """The flags every sweep command shares that are not fields of a config (where the rows go,
    where torch runs, how many workers, progress)."""
    if store:
        p.add_argument("--out", default=DEFAULT_STORE, metavar="DIR",
                       help=f"result store directory to write (default {DEFAULT_STORE})")
    if device:
        p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="where torch runs (default auto: CUDA when available)")
    if jobs:
        p.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1,
                       help="parallel workers (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


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


# -- the commands ------------------------------------------------------------------------
# Every subcommand: name -> (module exposing add_parser(sub), one-line help). The help lives here
# only (the command modules read it with command_help) so ``cubist --help`` can list every command without
# importing torch or numba; only the module of the command being run is imported.
COMMANDS = {
    "data": ("cubist.cli.data", "write the Cubist Spiral as Parquet (x1, x2, label)"),
    "search": ("cubist.cli.search", "exact combinatorial search for the sparsest models"),
    "prune": ("cubist.cli.prune", "prune spiral MLPs with a method over a grid of targets (batched runs)"),
    "audit": ("cubist.cli.audit", "report: pruning against the exact sparsest models"),
    "plot": ("cubist.cli.plot", "draw runs: decision regions, network graph, switching lines"),
    "store": ("cubist.cli.store", "check or repair a result store: bad shards, duplicate rows"),
}


def command_help(name: str) -> str:
    return COMMANDS[name][1]
