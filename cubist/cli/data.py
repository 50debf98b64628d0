"""``cubist data``: write a data set of the registry as Parquet (x1, x2, label) with its id;
``cubist data digits --out DIR``: scikit-learn's bundled digits as an ImageFolder directory."""
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
    p.add_argument("export", nargs="?", default=None, metavar="digits",
                   help="digits: write scikit-learn's 1,797 bundled 8x8 digits as PNG images into --out DIR "
                        "in the ImageFolder layout (train/ and val/, one folder per class; every 5th image of "
                        "each class to val/), for cubist imagenet")
    p.add_argument("--out", required=True, metavar="FILE", help="Parquet file to write (digits: a new directory)")
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
    # the positional takes any word, so that a stray word is reported as argparse reports it
    # (with choices=, a stray value after an unknown flag would read as a bad export name)
    if args.export not in (None, "digits"):
        raise CubistError(f"unrecognized arguments: {args.export}")
    if args.export == "digits":
        return _export_digits(args)
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


def write_digits(out: str) -> dict:
    """scikit-learn's bundled digits (all 1,797 8x8 images) as PNGs in the ImageFolder layout:
    ``out/train/<digit>/<index>.png`` and ``out/val/...`` (the images of each class in their
    order, every 5th to ``val/``). Written into a temporary directory beside ``out`` and renamed
    onto it at the end, so ``out`` appears whole or not at all. Returns the counts per split."""
    import shutil
    import tempfile

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    parent = os.path.dirname(os.path.abspath(out))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.", suffix=".tmp", dir=parent)
    counts = {"train": 0, "val": 0}
    try:
        seen = {}
        for i, (img, label) in enumerate(zip(digits.images, digits.target)):
            k = seen.get(int(label), 0)
            seen[int(label)] = k + 1
            split = "val" if k % 5 == 4 else "train"
            d = os.path.join(tmp, split, str(int(label)))
            os.makedirs(d, exist_ok=True)
            pixels = np.clip(np.round(img * (255 / 16)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(os.path.join(d, f"{i:04d}.png"))
            counts[split] += 1
        os.rename(tmp, out)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _export_digits(args):
    extra = [flag for flag, given in (("--plot", args.plot), ("--split", args.split != "train")) if given]
    if extra:
        raise CubistError(f"{', '.join(extra)} does not apply to 'cubist data digits'")
    if os.path.exists(args.out):
        raise CubistError(f"--out {args.out} exists; digits are written into a new directory")
    parent = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(parent):
        raise CubistError(f"cannot write {args.out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CubistError(f"cannot write {args.out}: permission denied")
    counts = write_digits(args.out)
    print(f"wrote {counts['train'] + counts['val']} digits to {args.out} ({counts['train']} in train/, "
          f"{counts['val']} in val/, 10 classes)")
