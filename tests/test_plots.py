import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex
from PIL import Image

from cubist.report import tables as A
from cubist.report import plots as P
from cubist.masks import dead_units, effective_masks

from handmade import TARGET, W3, W16, full_mask, prune_rows, random_mask, row, search_rows, weights_for

# a few points per class stand in for the spiral (the pictures only scatter them)
X_SMALL = np.array([[-1.0, -1.0], [1.0, 1.0], [0.5, -0.5], [-0.5, 0.5]], dtype=np.float32)
Y_SMALL = np.array([0, 1, 0, 1], dtype=np.float32)


def _mask_with_inactive():
    """(3,3,3): hidden-1 unit 2 has no outgoing weight, hidden-3 unit 1 no incoming weight."""
    m = full_mask(W3)
    m[1][:, 2] = False
    m[2][1, :] = False
    m[0][0, 1] = False
    return m


def _ax():
    return P.new_figure(4, 4).add_subplot()


def _collection(ax, gid) -> LineCollection:
    (c,) = [c for c in ax.collections if c.get_gid() == gid]
    return c


def _edge_set(masks):
    return {(l, int(i), int(j)) for l, m in enumerate(masks) for i, j in zip(*np.nonzero(m))}


# -- the network graph -----------------------------------------------------------------------
def test_network_graph_edges_and_greying():
    m = _mask_with_inactive()
    w = weights_for(m, seed=3)
    g = P.network_graph(m, w)
    assert len(g["edges"]) == sum(int(x.sum()) for x in m)
    eff = effective_masks(m)
    grey = {(l, i, j) for l, i, j, _, e in g["edges"] if not e}
    assert grey == _edge_set(m) - _edge_set(eff)
    assert grey                                    # the test mask does have inactive weights
    assert sum(not live for *_, live in g["nodes"]) == dead_units(m)
    for l, i, j, v, _ in g["edges"]:
        assert v == w[l][0][i, j]


def test_network_graph_exact_zero_weight_is_no_edge():
    m = full_mask((2, 2, 1))
    w = weights_for(m)
    w[0][0][1, 0] = 0.0
    assert len(P.network_graph(m, w)["edges"]) == 5
    assert len(P.network_graph(m)["edges"]) == 6   # mask only


def test_plot_network_artists():
    m = _mask_with_inactive()
    w = weights_for(m, seed=3)
    ax = P.plot_network(m, w, _ax())
    n_eff = sum(int(x.sum()) for x in effective_masks(m))
    eff, inactive = _collection(ax, "edges-effective"), _collection(ax, "edges-inactive")
    assert len(eff.get_segments()) == n_eff
    assert len(inactive.get_segments()) == sum(int(x.sum()) for x in m) - n_eff
    assert {to_hex(c) for c in inactive.get_colors()} == {P.INACTIVE}
    signs = [v > 0 for l, i, j, v, e in P.network_graph(m, w)["edges"] if e]
    assert [to_hex(c) for c in eff.get_colors()] == [P.POSITIVE if s else P.NEGATIVE for s in signs]
    widths = eff.get_linewidths()
    mags = [abs(v) for *_, v, e in P.network_graph(m, w)["edges"] if e]
    assert np.argmax(widths) == np.argmax(mags)
    dead = _collection(ax, "units-dead")
    live = _collection(ax, "units-live")
    assert len(dead.get_offsets()) == dead_units(m)
    assert len(live.get_offsets()) + len(dead.get_offsets()) == sum(W3)


# -- switching lines -------------------------------------------------------------------------
def test_switch_lines_solve_the_unit_equations():
    m = _mask_with_inactive()
    m[0][1, :] = False                             # hidden-1 unit 1: no line
    w = weights_for(m, seed=4)
    lines = P.switch_lines(m, w)
    assert [ln["unit"] for ln in lines] == [0, 2]
    W, b = w[0]
    for ln in lines:
        for end in ln["ends"]:
            assert W[ln["unit"]] @ end + b[ln["unit"]] == pytest.approx(0, abs=1e-4)
        assert np.linalg.norm(ln["ends"][0] - ln["ends"][1]) > 4 * P.EXTENT   # spans the box
    live = effective_masks(m)[0].any(axis=1)
    assert [ln["effective"] for ln in lines] == [bool(live[0]), bool(live[2])]
    assert not lines[1]["effective"]               # unit 2 has no outgoing weight


def test_plot_switch_lines_draws_one_line_per_unit():
    m = _mask_with_inactive()
    model = A.model_from_row(row("prune", "imp", W3, m, 0.9, target_nnz=20))
    ax = P.plot_switch_lines(model, _ax(), X_SMALL, Y_SMALL)
    gids = sorted(ln.get_gid() for ln in ax.lines)
    assert gids == ["switch-0", "switch-1", "switch-2"]
    styles = {ln.get_gid(): ln.get_linestyle() for ln in ax.lines}
    assert styles["switch-2"] == "--" and styles["switch-0"] == "-"
    assert ax.get_xlim() == (-P.EXTENT, P.EXTENT)


# -- decision regions ------------------------------------------------------------------------
def test_plot_regions_grid_matches_the_model():
    r = row("search_masks", "mask", W3, full_mask(W3), 0.97)
    model = A.model_from_row(r)
    ax = P.plot_regions(model, _ax(), X_SMALL, Y_SMALL)
    (img,) = ax.images
    arr = np.asarray(img.get_array())
    assert arr.shape == (P.GRID, P.GRID)
    assert img.get_extent() == [-P.EXTENT, P.EXTENT, -P.EXTENT, P.EXTENT]
    xs = np.linspace(-P.EXTENT, P.EXTENT, P.GRID, dtype=np.float32)
    for i, j in [(0, 0), (100, 400), (511, 17), (256, 256)]:
        z = model(torch.tensor([[xs[j], xs[i]]])).item()   # row i is x2, column j is x1
        assert arr[i, j] == (z > 0)
    assert {c.get_gid() for c in ax.collections} == {"data-0", "data-1"}


# -- several runs, files ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_rows():
    return [row("search_masks", "mask", W3, random_mask(W3, 20, 1), 0.97),
            row("prune", "imp", W16, random_mask(W16, 40, 2), 0.96, target_nnz=40)]


def test_plot_runs_layout_and_files(tmp_path, two_rows):
    fig = P.plot_runs(two_rows, ("regions", "network", "lines"), X_SMALL, Y_SMALL, panel_inches=3, dpi=40)
    assert len(fig.axes) == 6
    assert "imp 2-16-16-16-1" in fig.axes[1].get_title()
    paths = P.save_figure(fig, str(tmp_path / "runs.png"), ["png", "svg"])
    assert paths == [str(tmp_path / "runs.png"), str(tmp_path / "runs.svg")]
    with Image.open(paths[0]) as im:
        assert im.size == (2 * 3 * 40, 3 * 3 * 40)
    svg = (tmp_path / "runs.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_plot_runs_dataframe_and_one_picture(tmp_path, two_rows):
    fig = P.plot_runs(pd.DataFrame(two_rows[:1]), ["network"], panel_inches=3, dpi=40)
    (path,) = P.save_figure(fig, str(tmp_path / "net.png"))
    with Image.open(path) as im:
        assert im.size == (120, 120)


def test_plot_runs_rejects_bad_input(two_rows):
    with pytest.raises(ValueError, match="unknown picture"):
        P.plot_runs(two_rows, ["heatmap"])
    with pytest.raises(ValueError, match="no runs"):
        P.plot_runs([], ["network"])
    no_weights = row("prune", "imp", W3, full_mask(W3), 0.9, keep_weights=False)
    with pytest.raises(A.ResultsError, match="kept no weights"):
        P.plot_runs([no_weights], ["network"])


def test_output_paths():
    assert P.output_paths("a/b.svg") == ["a/b.svg"]
    assert P.output_paths("a/b.png", ["svg", "png"]) == ["a/b.svg", "a/b.png"]
    with pytest.raises(ValueError, match="format"):
        P.output_paths("a/b.jpg")
    with pytest.raises(ValueError, match="unknown format"):
        P.output_paths("a/b.png", ["pdf"])


# -- audit figures ---------------------------------------------------------------------------
def test_plot_pareto_and_overparam():
    df = A._normalise(pd.DataFrame(search_rows() + prune_rows()))
    pts = A.accuracy_vs_nnz(df)
    ax = P.plot_pareto(pts, A.search_frontier(df), _ax(), target=TARGET,
                       method_fronts=A.pareto_front(pts[pts["kind"] == "prune"], by="method"))
    gids = {c.get_gid() for c in ax.collections}
    assert {"points-search", "points-imp", "points-snip", "points-random"} <= gids
    (front,) = [ln for ln in ax.lines if ln.get_gid() == "search-front"]
    assert list(front.get_xdata()) == list(A.search_frontier(df)["weight_nnz"])
    assert ax.get_xscale() == "log"
    curve = A.overparam_curve(df, TARGET)
    ax = P.plot_overparam(curve, _ax(), search_nnz=20)
    (imp,) = [ln for ln in ax.lines if ln.get_gid() == "curve-imp"]
    shift = np.log2(imp.get_xdata()) - np.log2([3, 16])      # dodged sideways by one common factor
    assert abs(shift[0]) < 0.1 and shift[0] == pytest.approx(shift[1])
    assert list(imp.get_ydata()) == [22, 20]
    assert any(ln.get_ydata()[0] == 20 for ln in ax.lines if ln.get_gid() is None)  # the search bound


def test_plot_pareto_dense_as_front_and_distinct_styles():
    # Dense phase-1 runs are drawn as their front only (never as thousands of dots), the x range is
    # that of the masks and pruned runs, and every method gets its own colour-marker pair.
    dense = [row("search_widths", "dense", (2, w, w, w, 1), full_mask((2, w, w, w, 1)), acc)
             for w, acc in ((1, 0.5), (2, 0.7), (8, 0.99), (30, 1.0))]
    df = A._normalise(pd.DataFrame(search_rows() + prune_rows() + dense))
    pts = A.accuracy_vs_nnz(df)
    ax = P.plot_pareto(pts, A.search_frontier(df), _ax(), target=TARGET,
                       method_fronts=A.pareto_front(pts[pts["kind"] == "prune"], by="method"))
    gids = {c.get_gid() for c in ax.collections}
    assert not any("dense" in str(g) for g in gids)
    (front,) = [ln for ln in ax.lines if ln.get_gid() == "dense-front"]
    want = A.pareto_front(pts[pts["kind"] == "search_widths"])
    assert list(front.get_xdata()) == list(want["weight_nnz"]) and list(front.get_ydata()) == list(want["train_acc"])
    shown = pts.loc[pts["kind"] != "search_widths", "weight_nnz"]
    lo, hi = ax.get_xlim()
    assert lo < shown.min() and shown.max() < hi < want["weight_nnz"].max()
    fronts = {ln.get_gid(): ln for ln in ax.lines if str(ln.get_gid()).startswith("front-")}
    assert set(fronts) == {f"front-{m}" for m in pts.loc[pts["kind"] == "prune", "method"].unique()}
    styles = P.method_styles([f"m{k}" for k in range(20)])
    assert len({(str(s["color"]), s["marker"]) for s in styles.values()}) == 20
    assert P.method_styles(["b", "a"]) == P.method_styles(["a", "b"])


def test_plot_data_still_writes(tmp_path):
    P.plot_data(X_SMALL, Y_SMALL, str(tmp_path / "d.png"))
    assert (tmp_path / "d.png").stat().st_size > 0


def test_plot_overparam_when_nothing_reached(tmp_path):
    curve = pd.DataFrame({"method": ["gmp", "gmp"], "widths": [W3, W16], "start_width": [3, 16],
                          "dense_nnz": [27, 560], "nnz": [np.nan, np.nan], "effective_nnz": [np.nan, np.nan],
                          "search_nnz": [20.0, 20.0], "runs": [3, 3]})
    fig = P.new_figure(4, 3, 50)
    ax = P.plot_overparam(curve, fig.add_subplot(), search_nnz=20)
    assert ax.get_xlim()[0] < 3 < 16 < ax.get_xlim()[1]
    assert P.save_figure(fig, str(tmp_path / "o.png"))
