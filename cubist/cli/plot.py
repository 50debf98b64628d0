"""``cubist plot``: draw runs of result stores side by side (decision regions, network, switching lines)."""
from __future__ import annotations

from cubist.report.plots import FORMATS, WHAT, output_paths, plot_runs, save_figure

from .common import DEFAULT_STORE, CubistError, add_target, check_writable_file, command_help, csv, default_of, number


def add_parser(sub):
    p = sub.add_parser("plot", help=command_help("plot"),
                       description="Draw one or several runs of result stores side by side.")
    p.add_argument("results", nargs="*", default=[DEFAULT_STORE], metavar="RESULTS",
                   help=f"result store directories (default {DEFAULT_STORE})")
    pick = p.add_mutually_exclusive_group(required=True)
    pick.add_argument("--run-id", type=csv(), metavar="ID[,ID...]",
                      help="the runs to draw (unique prefixes suffice)")
    pick.add_argument("--best", action="store_true",
                      help="the sparsest run of each --method reaching --target ('search' for the search)")
    p.add_argument("--method", type=csv(), metavar="M[,M...]", help="methods for --best")
    add_target(p, text="train accuracy for --best")
    p.add_argument("--widths", type=csv(int, minimum=1), metavar="D0,...,DL",
                   help="only runs of these widths (--best)")
    p.add_argument("--out", default="plot.png", metavar="FILE", help="figure file, .png or .svg (default plot.png)")
    p.add_argument("--formats", type=csv(str, choices=FORMATS), metavar="png,svg",
                   help="write FILE's stem in each of these formats")
    p.add_argument("--what", type=csv(str, choices=WHAT), default=list(WHAT), metavar="regions,network,lines",
                   help="pictures per run (default all)")
    dpi = default_of(plot_runs, "dpi")
    p.add_argument("--dpi", type=number(int, lambda v: 10 <= v <= 1000, "a resolution in 10..1000 dpi"), default=dpi,
                   help=f"PNG resolution (default {dpi}; {int(4 * dpi)} pixels per panel)")
    p.set_defaults(func=_run_plot)


#: The largest figure drawn, in pixels (an RGBA canvas of 400 MB); Agg also caps each side.
MAX_PIXELS = 100_000_000
MAX_SIDE = 65_535


def check_canvas(n_runs: int, n_pictures: int, dpi: int) -> None:
    """Fail before drawing when the figure of ``n_runs`` x ``n_pictures`` panels at ``dpi`` is too big."""
    inches = default_of(plot_runs, "panel_inches")
    w, h = round(inches * n_runs * dpi), round(inches * n_pictures * dpi)
    if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
        raise CubistError(f"--dpi {dpi} with {n_runs} run{'s' if n_runs != 1 else ''} and {n_pictures} "
                          f"picture{'s' if n_pictures != 1 else ''} each makes a {w} x {h} pixel figure, beyond "
                          f"{MAX_PIXELS:,} pixels or {MAX_SIDE} a side; lower --dpi or draw fewer runs or --what")


def _run_plot(args):
    try:
        paths = output_paths(args.out, args.formats)
    except ValueError as e:
        raise CubistError(f"--out: {e}")
    for path in paths:
        check_writable_file(path)
    if args.best and not args.method:
        raise CubistError("--best needs --method (e.g. --method imp,search)")
    if not args.best and (args.method or args.widths):
        raise CubistError("--method and --widths select runs only with --best")
    n_runs = len(args.method) if args.best else len(args.run_id)
    check_canvas(n_runs, len(args.what), args.dpi)
    from cubist.report.tables import best_run, load_results, select_runs
    df = load_results(args.results)
    if args.best:
        rows = [best_run(df, m, args.target, widths=args.widths) for m in args.method]
    else:
        rows = [r for _, r in select_runs(df, args.run_id).iterrows()]
    fig = plot_runs(rows, args.what, dpi=args.dpi)
    for path in save_figure(fig, args.out, args.formats):
        print(f"wrote {path}")
    return 0
