"""``cubist data``: write a data set of the registry as Parquet (x1, x2, label) with its id."""
from __future__ import annotations

import dataclasses
import os

from cubist.store import write_atomically

from .common import CubistError, check_writable_file, command_help, config_flags, given_fields, union_flags


def add_parser(sub):
    """``cubist data`` (its entry in :data:`cubist.cli.common.COMMANDS`)."""
    from cubist.data import DATASETS, SPLITS, DataConfig
    p = sub.add_parser("data", help=command_help("data"),
                       description="Write a data set of the registry (default: the Cubist Spiral, the paper's "
                                   "recipe on defaults) as Parquet, with the id result rows record.")
    p.add_argument("--out", required=True, metavar="FILE", help="Parquet file to write")
    p.add_argument("--plot", metavar="FILE", help="also draw the two classes (a .png or .svg file)")
    p.add_argument("--split", choices=SPLITS, default="train",
                   help="training points, or a held-out companion set (default train)")
    config_flags(p, DataConfig, only=("name",), choices={"name": tuple(DATASETS)})
    g = p.add_argument_group("recipe (each applies to the data sets listed; default: the data set's own)")
    union_flags(g, {name: spec.recipe for name, spec in DATASETS.items()}, dest_prefix="r_", everyone="all data sets")
    p.set_defaults(func=_run_data)


def _recipe_error(e: Exception, fields) -> CubistError:
    """The recipe's own message, naming the flag of the field it starts with."""
    text = str(e)
    for name in sorted(fields, key=len, reverse=True):
        if text.startswith(name + " "):
            return CubistError(f"{text} (--{name.replace('_', '-')})")
    return CubistError(text)


def check_figure_file(path: str, flag: str) -> None:
    """Fail before any work when ``path`` is no PNG or SVG file name that can be written."""
    from cubist.report.plots import FORMATS
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise CubistError(f"{flag} {path}: cannot tell the figure format; use a name ending in "
                          f"{' or '.join('.' + f for f in FORMATS)}")
    check_writable_file(path)


def _run_data(args):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cubist.data import DataConfig, get_dataset

    spec = get_dataset(args.name)
    fields = {f.name for f in dataclasses.fields(spec.recipe)}
    recipe = given_fields(args, "r_", fields, f"data set {args.name}")
    try:
        data = DataConfig(args.name, recipe=tuple(sorted(recipe.items())))
    except (ValueError, TypeError) as e:
        raise _recipe_error(e, fields)
    # every output is checked before any work, so a bad one leaves nothing written
    check_writable_file(args.out)
    if args.plot:
        check_figure_file(args.plot, "--plot")
        if os.path.abspath(args.plot) == os.path.abspath(args.out):
            raise CubistError(f"--out and --plot name the same file {args.out}")
    X, y = data.arrays(args.split)
    # the id of these arrays; for the training split it is the id result rows of the same data carry
    did = data.split_id(X, y, args.split)
    meta = spec.meta(data.recipe_config(), args.split)
    table = pa.table({"x1": X[:, 0], "x2": X[:, 1], "label": y})
    table = table.replace_schema_metadata({"cubist.dataset_id": did, "cubist.recipe": str(meta)})
    write_atomically(args.out, lambda tmp: pq.write_table(table, tmp))
    print(f"wrote {len(X)} points ({int(y.sum())} of class 1) to {args.out}  dataset_id={did}")
    if args.plot:
        from cubist.report.plots import plot_data
        plot_data(X, y, args.plot, title=f"{spec.description} ({len(X)} points)")
        print(f"wrote {args.plot}")
