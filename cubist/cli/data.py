"""``cubist data``: write a data set of the registry as Parquet (x1, x2, label) with its id."""
from __future__ import annotations

import dataclasses

from cubist.store import write_atomically

from .common import check_writable_file, command_help, config_flags, given_fields, union_flags


def add_parser(sub):
    """``cubist data`` (its entry in :data:`cubist.cli.common.COMMANDS`)."""
    from cubist.data import DATASETS, SPLITS, DataConfig
    p = sub.add_parser("data", help=command_help("data"),
                       description="Write a data set of the registry (default: the Cubist Spiral, the paper's "
                                   "recipe on defaults) as Parquet, with the id result rows record.")
    p.add_argument("--out", required=True, metavar="FILE", help="Parquet file to write")
    p.add_argument("--plot", metavar="FILE", help="also draw the two classes (PNG or SVG)")
    p.add_argument("--split", choices=SPLITS, default="train",
                   help="training points, or a held-out companion set (default train)")
    config_flags(p, DataConfig, only=("name",), choices={"name": tuple(DATASETS)})
    g = p.add_argument_group("recipe (each applies to the data sets listed; default: the data set's own)")
    union_flags(g, {name: spec.recipe for name, spec in DATASETS.items()}, dest_prefix="r_", everyone="all data sets")
    p.set_defaults(func=_run_data)


def _run_data(args):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cubist.data import DataConfig, get_dataset

    spec = get_dataset(args.name)
    recipe = given_fields(args, "r_", {f.name for f in dataclasses.fields(spec.recipe)}, f"data set {args.name}")
    from .common import config_from_args
    data = config_from_args(DataConfig, args, recipe=tuple(sorted(recipe.items())))
    check_writable_file(args.out)
    if args.plot:
        check_writable_file(args.plot)
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
