"""Pictures of the Cubist Spiral, of single runs and of the audit (Zhang & Papyan, ICML 2024).

Single runs, rebuilt from a result row (:func:`cubist.report.tables.model_from_row`):

- decision regions on the paper's 512 x 512 grid over [-2.25, 2.25]^2, with the data
  (:func:`plot_regions`);
- the network as a graph: units as nodes in layers, nonzero weights as edges coloured by sign
  and as wide as their magnitude; weights on no input-to-output path and dead units are grey,
  exactly the complement of :func:`cubist.masks.effective_masks` (ALGORITHMS.md §5;
  :func:`network_graph`, :func:`plot_network`);
- the line where each first-layer unit switches on, ``w . x + b = 0``, in input space
  (:func:`switch_lines`, :func:`plot_switch_lines`);
- several runs side by side (:func:`plot_runs`), saved as PNG and/or SVG (:func:`save_figure`).

For the audit: accuracy against nnz with the search's Pareto front (:func:`plot_pareto`) and
the over-parameterisation curve (:func:`plot_overparam`). Figures are built on
``matplotlib.figure.Figure`` (no pyplot state); pyplot, when a function needs it, gets the Agg
backend unless the caller chose one already. The ``cubist plot`` subcommand is
:func:`add_parser`.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache

import numpy as np

from cubist.data import DataConfig
from cubist.store import write_atomically

CLASS_COLOURS = ("#1f77b4", "#d62728")
REGION_COLOURS = ("#c6dbef", "#fcbba1")       # light class 0 / class 1
POSITIVE, NEGATIVE, INACTIVE = "#d62728", "#1f77b4", "#c8c8c8"
GRID, EXTENT = 512, 2.25                       # the paper's decision-region grid
WHAT = ("regions", "network", "lines")
FORMATS = ("png", "svg")


def _pyplot():
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def new_figure(width_in: float, height_in: float, dpi: int = 100):
    """A pyplot-free Figure of exactly ``width_in x height_in`` inches at ``dpi``."""
    from matplotlib.figure import Figure
    return Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")


def plot_data(X: np.ndarray, y: np.ndarray, path: str | None = None, ax=None, s: float = 0.5,
              title: str | None = None):
    """Scatter the two classes; save to ``path`` (format from its suffix, written atomically) when given."""
    own = ax is None
    if own:
        fig = new_figure(5, 5, dpi=120)
        ax = fig.add_subplot()
    for c in (0, 1):
        sel = y == c
        ax.scatter(X[sel, 0], X[sel, 1], s=s, c=CLASS_COLOURS[c], label=f"class {c}", linewidths=0,
                   rasterized=len(X) > 5000)
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="upper right", markerscale=10, fontsize=8)
    ax.set_title(title or f"Cubist Spiral ({len(X)} points)")
    if own and path:
        write_atomically(path, lambda tmp: ax.figure.savefig(tmp, bbox_inches="tight"))
    return ax


@lru_cache(maxsize=4)
def training_data(data: DataConfig = DataConfig()) -> tuple[np.ndarray, np.ndarray]:
    """The training set of a data set of the registry (cached: every region picture draws it)."""
    return data.arrays("train")


def spiral_data() -> tuple[np.ndarray, np.ndarray]:
    """The paper's training set."""
    return training_data(DataConfig())


def _data(X, y, row=None):
    """The points to draw: ``X, y`` when given, else the training set of ``row``'s data set."""
    if X is None:
        return training_data(DataConfig.of_row(row) if row is not None else DataConfig())
    return np.asarray(X), np.asarray(y)


# -- decision regions ------------------------------------------------------------------------
def decision_grid(model, grid: int = GRID, extent: float = EXTENT) -> np.ndarray:
    """Logits of ``model`` on a ``grid x grid`` lattice over [-extent, extent]^2 (row = x2)."""
    import torch
    xs = np.linspace(-extent, extent, grid, dtype=np.float32)
    g1, g2 = np.meshgrid(xs, xs)
    pts = torch.as_tensor(np.stack([g1.ravel(), g2.ravel()], axis=1))
    model = model.cpu().eval()
    with torch.no_grad():
        z = model(pts).reshape(grid, grid).numpy()
    return z


def plot_regions(model, ax, X=None, y=None, grid: int = GRID, extent: float = EXTENT, s: float = 0.3):
    """Decision regions (``logit > 0`` is class 1) on the paper's grid, with the data on top."""
    from matplotlib.colors import ListedColormap
    X, y = _data(X, y)
    z = decision_grid(model, grid, extent)
    ax.imshow((z > 0).astype(np.uint8), origin="lower", extent=(-extent, extent, -extent, extent),
              cmap=ListedColormap(REGION_COLOURS), vmin=0, vmax=1, interpolation="nearest", gid="regions")
    for c in (0, 1):
        sel = y == c
        ax.scatter(X[sel, 0], X[sel, 1], s=s, c=CLASS_COLOURS[c], linewidths=0, rasterized=True,
                   gid=f"data-{c}")
    return _input_space_axes(ax, extent)


# -- the network as a graph ------------------------------------------------------------------
def network_graph(masks, weights=None) -> dict:
    """Nodes and edges of the drawing of a network.

    Edges are the nonzero weights (mask entries, and nonzero values when ``weights`` are
    given): ``(layer, out_unit, in_unit, value, effective)``, ``effective`` from
    :func:`cubist.masks.effective_masks` of that nonzero pattern. Nodes are
    ``(unit_layer, unit, live)``; a hidden unit is live when it lies on an input-to-output path.
    """
    from cubist.masks import effective_masks, reachability
    nz = [np.asarray(m) != 0 for m in masks]
    if weights is not None:
        nz = [m & (np.asarray(w) != 0) for m, (w, _) in zip(nz, weights)]
    eff = effective_masks(nz)
    fwd, bwd = reachability(nz)
    edges = []
    for l, (m, e) in enumerate(zip(nz, eff)):
        for i, j in zip(*np.nonzero(m)):
            value = float(weights[l][0][i, j]) if weights is not None else 1.0
            edges.append((l, int(i), int(j), value, bool(e[i, j])))
    last = len(fwd) - 1
    nodes = [(u, k, bool(u in (0, last) or (fwd[u][k] and bwd[u][k])))
             for u in range(len(fwd)) for k in range(len(fwd[u]))]
    return {"widths": (nz[0].shape[1],) + tuple(m.shape[0] for m in nz), "nodes": nodes, "edges": edges}


def _node_xy(widths):
    """Unit positions: unit layer ``u`` at x = u, units centred vertically, one unit apart."""
    return {(u, k): (float(u), (d - 1) / 2.0 - k) for u, d in enumerate(widths) for k in range(d)}


def plot_network(masks, weights, ax, max_width: float = 4.0):
    """The network as a layered graph (see :func:`network_graph` for what is drawn).

    Edges are two ``LineCollection`` s, gid ``edges-effective`` (red positive, blue negative,
    line width proportional to ``|w|``) and ``edges-inactive`` (grey); nodes are scatter
    collections ``units-live`` and ``units-dead`` (grey).
    """
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    g = network_graph(masks, weights)
    xy = _node_xy(g["widths"])
    top = max((abs(v) for *_, v, _e in g["edges"]), default=1.0) or 1.0
    for effective in (False, True):
        segs, colours, lws = [], [], []
        for l, i, j, v, e in g["edges"]:
            if e != effective:
                continue
            segs.append([xy[(l, j)], xy[(l + 1, i)]])
            colours.append((POSITIVE if v > 0 else NEGATIVE) if e else INACTIVE)
            lws.append(0.4 + max_width * abs(v) / top if weights is not None else 1.0)
        ax.add_collection(LineCollection(segs, colors=colours, linewidths=lws, zorder=1 + effective,
                                         gid="edges-effective" if effective else "edges-inactive",
                                         capstyle="round"))
    for live in (True, False):
        pts = np.array([xy[(u, k)] for u, k, a in g["nodes"] if a == live]).reshape(-1, 2)
        ax.scatter(pts[:, 0], pts[:, 1], s=90, zorder=3, edgecolors="black" if live else INACTIVE,
                   facecolors="white" if live else "#eeeeee", linewidths=1.0,
                   gid="units-live" if live else "units-dead")
    w = g["widths"]
    for k in range(w[0]):
        ax.annotate(f"x{k + 1}", xy[(0, k)], xytext=(-10, 0), textcoords="offset points", ha="right",
                    va="center", fontsize=8)
    ax.annotate("logit", xy[(len(w) - 1, 0)], xytext=(10, 0), textcoords="offset points", va="center",
                fontsize=8)
    ax.set_xlim(-0.6, len(w) - 0.4)
    ax.set_ylim(-(max(w) + 1) / 2.0, (max(w) + 1) / 2.0)
    ax.set_xticks(range(len(w)), ["in"] + [f"h{u}" for u in range(1, len(w) - 1)] + ["out"])
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.legend(handles=[Line2D([], [], color=POSITIVE, label="w > 0"), Line2D([], [], color=NEGATIVE, label="w < 0"),
                       Line2D([], [], color=INACTIVE, label="on no path")],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=7, frameon=False)
    return ax


# -- first-layer switching lines -------------------------------------------------------------
def switch_lines(masks, weights, extent: float = EXTENT) -> list[dict]:
    """For each first-layer unit with a nonzero incoming weight, its line ``w . x + b = 0``.

    Each entry: ``unit``, ``w`` (2,), ``b``, ``foot`` (the point of the line closest to the
    origin), ``ends`` (two points on the line, beyond the box of half-width ``extent``) and
    ``effective`` (the unit lies on an input-to-output path).
    """
    from cubist.masks import effective_masks
    W, b = (np.asarray(a, dtype=np.float64) for a in weights[0])
    nz = [np.asarray(m) != 0 for m in masks]
    nz = [m & (np.asarray(w) != 0) for m, (w, _) in zip(nz, weights)]
    live = effective_masks(nz)[0].any(axis=1)
    out = []
    for i in range(W.shape[0]):
        w = W[i] * nz[0][i]
        norm2 = float(w @ w)
        if norm2 == 0:
            continue
        foot = -b[i] * w / norm2
        along = np.array([-w[1], w[0]]) / np.sqrt(norm2)
        reach = 4 * extent + float(np.linalg.norm(foot))
        out.append({"unit": i, "w": w, "b": float(b[i]), "foot": foot,
                    "ends": (foot - reach * along, foot + reach * along), "effective": bool(live[i])})
    return out


def plot_switch_lines(model, ax, X=None, y=None, extent: float = EXTENT, regions: bool = True):
    """First-layer switching lines over the data (and faint decision regions when ``regions``).

    Each unit is a ``Line2D`` with gid ``switch-<unit>`` (grey and dashed for a unit on no
    input-to-output path); an arrow marks the side where the unit is on (``w . x + b > 0``).
    """
    from matplotlib.colors import ListedColormap
    X, y = _data(X, y)
    if regions:
        z = decision_grid(model, GRID, extent)
        ax.imshow((z > 0).astype(np.uint8), origin="lower", extent=(-extent, extent, -extent, extent),
                  cmap=ListedColormap(REGION_COLOURS), vmin=0, vmax=1, alpha=0.5, interpolation="nearest")
    for c in (0, 1):
        sel = y == c
        ax.scatter(X[sel, 0], X[sel, 1], s=0.2, c=CLASS_COLOURS[c], linewidths=0, rasterized=True, alpha=0.4)
    colours = _pyplot().get_cmap("tab10")
    for k, line in enumerate(switch_lines(model.masks(), model.weights_numpy(), extent)):
        colour = colours(k % 10) if line["effective"] else INACTIVE
        (a, b_) = line["ends"]
        ax.plot([a[0], b_[0]], [a[1], b_[1]], color=colour, lw=1.5, ls="-" if line["effective"] else "--",
                gid=f"switch-{line['unit']}", label=f"unit {line['unit']}")
        foot, w = line["foot"], line["w"]
        if np.all(np.abs(foot) <= extent):
            tip = foot + 0.3 * w / np.linalg.norm(w)
            ax.annotate("", tip, foot, arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.2})
            ax.annotate(str(line["unit"]), foot, xytext=(3, 3), textcoords="offset points", fontsize=7,
                        color=colour)
    return _input_space_axes(ax, extent)


# -- several runs ----------------------------------------------------------------------------
def run_title(row) -> str:
    from .tables import widths_label

    def num(v, fmt):
        return "?" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)
    label = "search" if row.get("kind") == "search_masks" else row.get("method")
    return (f"{label} {widths_label(row.get('widths'))}\n"
            f"nnz {num(row.get('weight_nnz'), '.0f')} (eff. {num(row.get('effective_nnz'), '.0f')}), "
            f"acc {num(row.get('train_acc'), '.4f')}\n{row.get('run_id')}")


def plot_runs(rows, what=WHAT, X=None, y=None, panel_inches: float = 4.0, dpi: int = 100):
    """One column per run, one row per picture in ``what`` (regions, network, lines).

    ``rows``: result rows (DataFrame, or a list of dicts/Series), each rebuilt with
    :func:`cubist.report.tables.model_from_row`. ``X, y``: the points drawn (default: each run's
    own data set's training points, :func:`training_data`). The figure is exactly ``panel_inches * len(rows)`` by
    ``panel_inches * len(what)`` inches at ``dpi``.
    """
    from .tables import model_from_row
    what = list(what)
    unknown = [w for w in what if w not in WHAT]
    if unknown or not what:
        raise ValueError(f"unknown picture {', '.join(unknown) or '(none)'}; choose from {', '.join(WHAT)}")
    rows = [r for _, r in rows.iterrows()] if hasattr(rows, "iterrows") else list(rows)
    if not rows:
        raise ValueError("no runs to draw")
    fig = new_figure(panel_inches * len(rows), panel_inches * len(what), dpi)
    axes = fig.subplots(len(what), len(rows), squeeze=False)
    for c, row in enumerate(rows):
        model = model_from_row(row)
        Xr, yr = _data(X, y, row) if any(w != "network" for w in what) else (None, None)
        for r, kind in enumerate(what):
            ax = axes[r][c]
            if kind == "regions":
                plot_regions(model, ax, Xr, yr)
            elif kind == "network":
                plot_network(model.masks(), model.weights_numpy(), ax)
            else:
                plot_switch_lines(model, ax, Xr, yr)
        axes[0][c].set_title(run_title(row), fontsize=8)
    return fig


def output_paths(out: str, formats=None) -> list[str]:
    """The files :func:`save_figure` writes: ``out`` itself, or its stem with each format."""
    stem, ext = os.path.splitext(out)
    if formats:
        bad = [f for f in formats if f not in FORMATS]
        if bad:
            raise ValueError(f"unknown format {', '.join(bad)}; choose from {', '.join(FORMATS)}")
        return [f"{stem}.{f}" for f in formats]
    if ext.lower().lstrip(".") not in FORMATS:
        raise ValueError(f"cannot tell the format of {out}: use a .png or .svg name, or --formats")
    return [out]


def save_figure(fig, out: str, formats=None) -> list[str]:
    """Write ``fig`` to ``out`` (format from its suffix) or to ``stem.<f>`` for each of ``formats``.

    The canvas is kept exactly (no tight bounding box), so a PNG is ``figsize * dpi`` pixels.
    """
    paths = output_paths(out, formats)
    for p in paths:
        write_atomically(p, lambda tmp: fig.savefig(tmp, dpi=fig.dpi))
    return paths


# -- audit figures ---------------------------------------------------------------------------
MARKERS = "osD^vPX*<>hp"
NNZ_TICKS = (1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 65, 80, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10000)


def method_styles(methods) -> dict[str, dict]:
    """Colour and marker per method label: distinct for up to 20 methods (tab20 colours, so
    neighbours in name order, e.g. ``imp`` and ``imp+pilot``, share a hue), and the same in every
    figure drawn with the same method list."""
    cmap = _pyplot().get_cmap("tab20")
    names = sorted({str(m) for m in methods})
    return {m: {"color": cmap(k % 20), "marker": MARKERS[k % len(MARKERS)]} for k, m in enumerate(names)}


def _style(styles: dict, method) -> dict:
    return styles.get(str(method)) or {"color": "grey", "marker": "o"}


def _legend_outside(ax, **kw):
    return ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                     frameon=False, **kw)


def plot_pareto(points, frontier, ax, target: float | None = None, method_fronts=None, styles=None):
    """Accuracy against weight nnz: the search's masks and Pareto front, each method's front.

    ``points``: :func:`cubist.report.tables.accuracy_vs_nnz`; ``frontier``:
    :func:`cubist.report.tables.search_frontier`; ``method_fronts``: optional
    :func:`cubist.report.tables.pareto_front` by method, drawn as steps with markers (the runs of a
    method are faint dots of its colour). Dense architectures (phase 1) are drawn only as their
    front (dashed), and the x range is that of the masks and pruned runs, so thousands of dense
    runs do not bury the comparison. ``styles``: :func:`method_styles` (default: from ``points``).
    """
    from .tables import DENSE_KIND, SEARCH_KIND, pareto_front
    search = points[points["kind"] == SEARCH_KIND]
    dense = points[points["kind"] == DENSE_KIND]
    others = points[(points["kind"] != SEARCH_KIND) & (points["kind"] != DENSE_KIND)]
    styles = styles or method_styles(others["method"].unique())
    if len(search):
        ax.scatter(search["weight_nnz"], search["train_acc"], s=5, c="#b0b0b0", alpha=0.5, linewidths=0,
                   label="search masks (runs)", gid="points-search", rasterized=len(search) > 2000)
    if len(frontier):
        ax.step(frontier["weight_nnz"], frontier["train_acc"], where="post", color="black", lw=2.0,
                label="search front", gid="search-front", zorder=5)
    if len(dense):
        front = pareto_front(dense)
        ax.step(front["weight_nnz"], front["train_acc"], where="post", color="#555555", lw=1.2, ls="--",
                label="dense architectures front", gid="dense-front", zorder=4)
    for m, g in sorted(others.groupby("method"), key=lambda t: str(t[0])):
        st = _style(styles, m)
        ax.scatter(g["weight_nnz"], g["train_acc"], s=6, color=st["color"], alpha=0.25, linewidths=0,
                   gid=f"points-{m}")
        if method_fronts is not None and len(method_fronts):
            f = method_fronts[method_fronts["method"] == m]
            ax.step(f["weight_nnz"], f["train_acc"], where="post", color=st["color"], lw=1.0,
                    marker=st["marker"], ms=4, label=str(m), gid=f"front-{m}", zorder=3)
        else:
            ax.scatter([], [], color=st["color"], marker=st["marker"], label=str(m))
    if target is not None:
        ax.axhline(target, color="black", ls=":", lw=1, label=f"target {target}")
    shown = points.loc[points["kind"] != DENSE_KIND, "weight_nnz"]
    shown = shown if len(shown) else points["weight_nnz"]
    if len(shown) and (shown > 0).all():
        lo, hi = float(shown.min()) / 1.1, float(shown.max()) * 1.1
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ticks = [v for v in NNZ_TICKS if lo <= v <= hi]
        if len(ticks) >= 2:
            ax.set_xticks(ticks, [str(v) for v in ticks])
            ax.minorticks_off()
    lo = float(points["train_acc"].min()) if len(points) else 0.5
    ax.set_ylim(max(0.45, lo - 0.02), 1.005)
    ax.set_xlabel("nonzero weights")
    ax.set_ylabel("train accuracy")
    _legend_outside(ax)
    return ax


def plot_overparam(curve, ax, search_nnz: float | None = None, styles=None):
    """Smallest nnz reaching the target against the starting width, one line per method.

    ``curve``: :func:`cubist.report.tables.overparam_curve`. Methods are dodged slightly sideways so
    equal values stay visible; a method that never reached the target at a width gets its marker
    in the band above the axes' top (labelled "never"); ``search_nnz`` draws the search's bound.
    """
    from matplotlib.transforms import blended_transform_factory
    styles = styles or method_styles(curve["method"].unique())
    top = blended_transform_factory(ax.transData, ax.transAxes)
    groups = sorted(curve.groupby("method"), key=lambda t: str(t[0]))
    n = len(groups)
    for k, (m, g) in enumerate(groups):
        st = _style(styles, m)
        g = g.sort_values("start_width")
        dodge = 2.0 ** ((k - (n - 1) / 2) * (0.14 / max(n - 1, 1)))
        xs = g["start_width"].to_numpy(dtype=float) * dodge
        ax.plot(xs, g["nnz"], marker=st["marker"], ms=5, lw=1.0, color=st["color"], label=str(m),
                gid=f"curve-{m}")
        miss = g["nnz"].isna().to_numpy()
        if miss.any():
            ax.scatter(xs[miss], [1.04] * int(miss.sum()), marker=st["marker"], s=18, color=st["color"],
                       transform=top, clip_on=False, gid=f"never-{m}")
    if search_nnz is not None and not np.isnan(search_nnz):
        ax.axhline(search_nnz, color="black", ls="--", lw=1, label=f"search: {search_nnz:.0f}")
    if curve["nnz"].isna().any():
        ax.text(0.0, 1.04, "never ", transform=ax.transAxes, ha="right", va="center", fontsize=7)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("starting width (widest hidden layer)")
    ax.set_ylabel("fewest nonzero weights reaching the target")
    xs = sorted(int(x) for x in curve["start_width"].unique() if x > 0)
    if len(xs) > 1:
        ax.set_xscale("log", base=2)
        ax.set_xlim(xs[0] / 1.25, xs[-1] * 1.25)
    elif xs:
        ax.set_xlim(xs[0] - 1, xs[0] + 1)
    if xs:
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
    _legend_outside(ax)
    return ax


def _input_space_axes(ax, extent: float):
    """Square input-space axes over [-extent, extent]^2, labelled x1 and x2."""
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    return ax
