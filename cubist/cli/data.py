"""``cubist data``: write a data set of the registry as Parquet (x1, x2, label) with its id."""
from __future__ import annotations

from .common import check_writable_file, command_help, config_flags, config_from_args


def add_parser(sub):
    """``cubist data`` (its entry in :data:`cubist.cli.common.COMMANDS`)."""
    from cubist.spiral import HELDOUT_KINDS, SpiralRecipe
    p = sub.add_parser("data", help=command_help("data"),
                       description="Write the Cubist Spiral (the paper's recipe on defaults) as Parquet.")
    p.add_argument("--out", required=True, metavar="FILE", help="Parquet file to write")
    p.add_argument("--plot", metavar="FILE", help="also draw the two classes (PNG or SVG)")
    p.add_argument("--split", choices=("train",) + HELDOUT_KINDS, default="train",
                   help="training points, or a held-out companion set (default train)")
    config_flags(p, SpiralRecipe)
    p.set_defaults(func=_run_data)


def _run_data(args):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cubist.spiral import SpiralRecipe, make_heldout, make_spiral, spiral_id, spiral_meta

    recipe = config_from_args(SpiralRecipe, args)
    check_writable_file(args.out)
    if args.plot:
        check_writable_file(args.plot)
    if args.split == "train":
        X, y = make_spiral(**recipe.to_dict())
    else:
        X, y = make_heldout(args.split, **recipe.to_dict())
    # the id of these arrays; for the training split it is Dataset.spiral(...).id, the id result
    # rows of the same recipe carry
    did = spiral_id(recipe, X, y, args.split)
    meta = spiral_meta(recipe, args.split)
    table = pa.table({"x1": X[:, 0], "x2": X[:, 1], "label": y})
    table = table.replace_schema_metadata({"cubist.dataset_id": did, "cubist.recipe": str(meta)})
    pq.write_table(table, args.out)
    print(f"wrote {len(X)} points ({int(y.sum())} of class 1) to {args.out}  dataset_id={did}")
    if args.plot:
        from cubist.report.plots import plot_data
        plot_data(X, y, args.plot)
        print(f"wrote {args.plot}")


