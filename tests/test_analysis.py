import itertools
import math

import numpy as np
import pandas as pd
import pytest

from cubist.report import symmetry as S
from cubist.report import tables as A
from cubist.masks import mask_counts

from handmade import (MASK_A, MASK_P, MASK_Q, MASK_R, MASK_S, MASK_T, TARGET, W3, W16, full_mask, prune_rows,
                      random_mask, row, search_rows, success_dense_rows, success_prune_rows, success_search_rows,
                      write_store)


@pytest.fixture(scope="module")
def rows():
    return search_rows() + prune_rows()


@pytest.fixture(scope="module")
def df(tmp_path_factory, rows):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    write_store(a, rows[:8])
    write_store(b, rows[8:] + rows[:2])  # two duplicated run ids across stores
    return A.load_results([a, b])


def _id(rows, **match):
    for r in rows:
        if all(r[k] == v for k, v in match.items()):
            return r["run_id"]
    raise KeyError(match)


# -- loading ---------------------------------------------------------------------------------
def test_load_results_one_row_per_run(df, rows):
    assert len(df) == len(rows)
    assert df["run_id"].is_unique
    assert set(df["widths"]) == {W3, W16, (2, 2, 2, 2, 1)}


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_load_results_bad_input(tmp_path, make):
    path = tmp_path / "store"
    if make == "empty":
        path.mkdir()
    elif make == "file":
        path.write_text("x")
    with pytest.raises(A.ResultsError, match="store"):
        A.load_results(path)
    with pytest.raises(A.ResultsError):
        A.load_results([])


def test_tables_rebuild_from_duckdb(df, tmp_path, rows):
    duckdb = pytest.importorskip("duckdb")
    write_store(tmp_path, rows)
    raw = duckdb.sql(f"select * from read_parquet('{tmp_path}/*.parquet')").df()
    pd.testing.assert_frame_equal(A.sparsest_search(raw, TARGET), A.sparsest_search(df, TARGET))
    pd.testing.assert_frame_equal(A.method_frontier(raw, TARGET), A.method_frontier(df, TARGET))


# -- the search ------------------------------------------------------------------------------
def test_sparsest_search(df, rows):
    s = A.sparsest_search(df, TARGET)
    assert list(s["widths"]) == [W3, (2, 2, 2, 2, 1)]
    top = s.iloc[0]
    # 18-nnz masks: one diverged (acc 0.99 does not count), one at 0.94
    assert top["search_nnz"] == 20
    assert top["masks_reaching"] == 2           # A (one seed of two) and B; C failed
    assert top["masks_at_nnz"] == 3
    assert top["masks_tried"] == 6 and top["runs"] == 7
    assert top["best_acc"] == 0.97
    assert top["run_id"] == _id(rows, kind="search_masks", train_acc=0.97)
    never = s.iloc[1]
    assert math.isnan(never["search_nnz"]) and never["masks_reaching"] == 0 and pd.isna(never["run_id"])


def test_sparsest_search_target_boundary(df):
    s = A.sparsest_search(df, 0.99).set_index("widths")
    assert s.loc[[W3], "search_nnz"].item() == 25     # the diverged 0.99 at 18 does not count


def test_search_bound_embeds():
    s = pd.DataFrame({"widths": [W3, (2, 2, 2, 2, 1)], "search_nnz": [20.0, 30.0]})
    assert A.search_bound(s, W16) == 20
    assert A.search_bound(s, (2, 2, 3, 3, 1)) == 30
    assert math.isnan(A.search_bound(s, (2, 1, 1, 1, 1)))
    assert math.isnan(A.search_bound(s, (2, 16, 16, 1)))


def test_smallest_dense():
    rows_ = [row("search_widths", "dense", w, full_mask(w), acc)
             for w, acc in [((2, 3, 3, 3, 1), 0.96), ((2, 3, 3, 4, 1), 0.97), ((2, 2, 3, 3, 1), 0.90),
                            ((2, 4, 2, 2, 1), 0.951)]]
    t = A.smallest_dense(pd.DataFrame(rows_), TARGET).set_index("widths")
    assert t.loc[[(2, 3, 3, 3, 1)], "minimal"].item() and not t.loc[[(2, 3, 3, 4, 1)], "minimal"].item()
    assert t.loc[[(2, 4, 2, 2, 1)], "minimal"].item() and not t.loc[[(2, 2, 3, 3, 1)], "minimal"].item()
    assert t.loc[[(2, 3, 3, 3, 1)], "dense_nnz"].item() == 6 + 9 + 9 + 3


# -- the pruners -----------------------------------------------------------------------------
def test_success_rates(df):
    r = A.success_rates(df, TARGET).set_index(["widths", "method", "level"])
    assert r.loc[(W3, "imp", 24.0), "success_rate"] == 0.5
    assert r.loc[(W3, "imp", 22.0), "success_rate"] == 1.0
    assert r.loc[(W3, "imp", 21.0), "success_rate"] == 0.0
    assert r.loc[(W3, "random", 26.0), "diverged_runs"] == 1
    assert r.loc[(W3, "random", 26.0), "reached_runs"] == 0


def test_method_frontier(df, rows):
    f = A.method_frontier(df, TARGET)
    pick = lambda w, m: f[A.has_widths(f, w) & (f["method"] == m)].squeeze()  # noqa: E731
    imp = pick(W3, "imp")
    assert imp["min_level"] == 22 and imp["min_weight_nnz"] == 22 and imp["success_rate"] == 1.0
    assert imp["search_nnz"] == 20 and imp["ratio"] == pytest.approx(1.1)
    tied = sorted(r["run_id"] for r in rows if r["method"] == "imp" and r["target_nnz"] == 22)
    assert imp["run_id"] == tied[0]                     # equal accuracy: smaller run id
    assert imp["runs"] == 5 and imp["reached_runs"] == 3
    rnd = pick(W3, "random")
    assert rnd["reached_runs"] == 0 and math.isnan(rnd["min_weight_nnz"]) and math.isnan(rnd["ratio"])
    assert rnd["success_rate"] == 0 and pd.isna(rnd["run_id"])
    wide = pick(W16, "imp")                          # exactly at the target counts; bound via (3,3,3)
    assert wide["min_weight_nnz"] == 20 and wide["search_nnz"] == 20 and wide["ratio"] == 1.0


def test_headline(df):
    h = A.headline(df, TARGET, methods=["imp", "snip", "random", "dwf"])
    assert list(zip(h["method"], h["widths"], h["rank"].tolist())) == [
        ("search", W3, 1), ("imp", W16, 1), ("imp", W3, 3), ("snip", W3, 3),
        ("search", (2, 2, 2, 2, 1), pd.NA), ("random", W3, pd.NA), ("dwf", (), pd.NA)]
    st = h.set_index("method")["status"]
    assert st["random"] == A.NEVER and st["dwf"] == A.NO_RUNS and st["snip"] == "ok"
    assert math.isnan(h.set_index("method").loc["dwf", "nnz"])


def test_headline_without_search_rows(df):
    h = A.headline(df[df["kind"] == "prune"], TARGET)
    assert "search" not in set(h["method"]) and h["search_nnz"].isna().all()


def test_headline_empty():
    assert A.headline(pd.DataFrame(columns=["run_id", "kind"]), TARGET).empty


# -- effective sparsity ----------------------------------------------------------------------
def test_effective_sparsity(df):
    e = A.effective_sparsity(df).set_index(["kind", "widths", "method", "level"])
    r = df[(df["method"] == "imp") & (df["widths"] == W16) & (df["target_nnz"] == 20)].iloc[0]
    c = mask_counts(A.row_masks(r))
    got = e.loc[("prune", W16, "imp", 20.0)]
    assert got["weight_nnz"] == 20 and got["effective_nnz"] == c["effective_nnz"]
    assert got["inactive"] == 20 - c["effective_nnz"] and got["dead_units"] == c["dead_units"]
    assert got["runs_with_dead"] == float(c["dead_units"] > 0)


def test_effective_counts_from_masks_when_missing(df):
    blank = df.copy()
    blank["effective_nnz"] = None
    blank["dead_units"] = None
    pd.testing.assert_frame_equal(A.effective_sparsity(blank), A.effective_sparsity(df))


# -- curves ----------------------------------------------------------------------------------
def test_overparam_curve(df):
    c = A.overparam_curve(df, TARGET)
    imp = c[c["method"] == "imp"]
    assert list(imp["start_width"]) == [3, 16] and list(imp["nnz"]) == [22, 20]
    assert list(imp["dense_nnz"]) == [27, 2 * 16 + 256 + 256 + 16]
    assert math.isnan(c[c["method"] == "random"]["nnz"].item())


def test_pareto_front():
    pts = pd.DataFrame({"m": ["a"] * 5 + ["b"], "weight_nnz": [10, 10, 12, 15, 20, 5],
                        "train_acc": [0.8, 0.85, 0.84, 0.9, 0.9, 0.5]})
    p = A.pareto_front(pts, by="m")
    assert list(zip(p["m"], p["weight_nnz"], p["train_acc"])) == [
        ("a", 10, 0.85), ("a", 15, 0.9), ("b", 5, 0.5)]


def test_search_frontier_skips_diverged(df):
    f = A.search_frontier(df)
    assert 18 in set(f["weight_nnz"])               # the 0.94 mask, not the diverged 0.99 one
    assert f.set_index("weight_nnz").loc[18, "train_acc"] == 0.94
    assert list(f["weight_nnz"]) == [10, 18, 20, 25]


def test_accuracy_vs_nnz(df):
    pts = A.accuracy_vs_nnz(df)
    assert len(pts) == len(df) - 2 and not pts["run_id"].isin(df.loc[df["diverged"], "run_id"]).any()


# -- masks up to symmetry ---------------------------------------------------------------------
def permute_hidden(masks, perms):
    """Joint permutation: hidden layer h by perms[h-1]; inputs and output fixed."""
    full = [np.arange(masks[0].shape[1])] + list(perms) + [np.arange(masks[-1].shape[0])]
    return [m[full[l + 1]][:, full[l]] for l, m in enumerate(masks)]


def brute_force_overlap(a, b):
    widths = S.mask_widths(a)
    best = 0
    for perms in itertools.product(*[itertools.permutations(range(d)) for d in widths[1:-1]]):
        pb = permute_hidden(b, [np.array(p) for p in perms])
        best = max(best, sum(int((x & y).sum()) for x, y in zip(a, pb)))
    return best


@pytest.mark.parametrize("widths,seed", [((2, 3, 3, 3, 1), 0), ((2, 3, 2, 4, 1), 1), ((2, 4, 4, 1), 2),
                                          ((2, 3, 3, 3, 1), 3)])
def test_max_shared_weights_matches_brute_force(widths, seed):
    total = sum(a * b for a, b in zip(widths[1:], widths))
    a = random_mask(widths, total // 2, seed)
    b = random_mask(widths, total // 2 + 1, seed + 50)
    shared, exact = S.max_shared_weights(a, b)
    assert exact and shared == brute_force_overlap(a, b)
    heur, exact = S.max_shared_weights(a, b, exact_max_width=0)
    assert not exact and heur <= shared                 # the heuristic is a lower bound
    assert heur >= sum(int((x & y).sum()) for x, y in zip(a, b))  # never worse than the identity


@pytest.mark.parametrize("canonical", [True, False], ids=["canonical form", "overlap"])
def test_permuted_mask_is_same_orbit(canonical):
    rng = np.random.default_rng(0)
    b = permute_hidden(MASK_A, [rng.permutation(3) for _ in range(3)])
    nnz = sum(int(m.sum()) for m in MASK_A)
    assert S.max_shared_weights(MASK_A, b) == (nnz, True)
    assert S.same_orbit(MASK_A, b, canonical=canonical)
    other = random_mask(W3, nnz, 99)
    assert S.same_orbit(other, other, canonical=canonical)
    assert S.same_orbit(MASK_A, other, canonical=canonical) == (brute_force_overlap(MASK_A, other) == nnz)


def test_max_shared_weights_pads_widths():
    small = full_mask((2, 1, 1, 1))
    big = S.pad_masks(small, (2, 3, 2, 1))
    big = permute_hidden(big, [np.array([2, 0, 1]), np.array([1, 0])])
    assert S.max_shared_weights(small, big) == (4, True)
    with pytest.raises(ValueError):
        S.max_shared_weights(small, full_mask((3, 1, 1, 1)))


def test_max_shared_weights_of_empty_masks():
    empty = [np.zeros(s, dtype=bool) for s in [(0, 2), (0, 0), (1, 0)]]
    assert S.max_shared_weights(empty, empty) == (0, True)
    dead = [np.zeros(s, dtype=bool) for s in [(3, 2), (3, 3), (1, 3)]]
    assert S.max_shared_weights(S.compact_masks(dead), full_mask((2, 1, 1, 1))) == (0, True)


def test_compact_masks_drops_dead_units_and_inactive_weights():
    m = full_mask(W3)
    m[1][:, 2] = False          # hidden-1 unit 2 has no outgoing weight: its input weights are inactive
    m[2][1, :] = False          # hidden-3 unit 1 has no input: its output weight is inactive
    c = S.compact_masks(m)
    assert S.mask_widths(c) == (2, 2, 3, 2, 1)
    assert sum(int(x.sum()) for x in c) == mask_counts(m)["effective_nnz"]


def test_overlap_with_sparsest_table(df, rows):
    rng = np.random.default_rng(3)
    perm = permute_hidden(MASK_A, [rng.permutation(3) for _ in range(3)])
    wide = permute_hidden(S.pad_masks(MASK_A, W16), [rng.permutation(16) for _ in range(3)])
    extra = [row("prune", "perm", W3, perm, 0.96, target_nnz=20),
             row("prune", "wide", W16, wide, 0.97, target_nnz=20),
             row("prune", "fail", W3, perm, 0.5, target_nnz=20)]
    both = pd.concat([df, A._normalise(pd.DataFrame(extra))], ignore_index=True)
    o = A.overlap_with_sparsest(both, TARGET).set_index("method")
    eff = sum(int(m.sum()) for m in S.compact_masks(MASK_A))
    for method in ("perm", "wide"):
        assert o.loc[method, "same_orbit"] and o.loc[method, "shared"] == eff and o.loc[method, "exact"]
        assert o.loc[method, "search_nnz"] == 20 and o.loc[method, "shared_frac"] == eff / 20
    assert "fail" not in o.index and "random" not in o.index   # only runs that reached the target
    imp = o.loc[["imp"]]
    assert len(imp) == 5 and not imp["same_orbit"].any()
    s = A.overlap_summary(A.overlap_with_sparsest(both, TARGET)).set_index("method")
    assert s.loc["perm", "same_orbit_runs"] == 1 and s.loc["perm", "max_shared_frac"] == eff / 20


def test_normalised_once_and_kept(df, rows):
    assert A.is_normalised(df) and A.normalised(df) is df
    assert A.is_normalised(df[df["kind"] == A.PRUNE_KIND])          # a selection of its rows stays normalised
    raw = pd.DataFrame(rows)
    assert not A.is_normalised(raw) and A.is_normalised(A.normalised(raw))
    blank = df.assign(effective_nnz=None)                           # a column assigned since: normalised again
    assert not A.is_normalised(blank) and A.normalised(blank)["effective_nnz"].dtype == np.float64
    assert not A.is_normalised(df.assign(widths=[list(w) for w in df["widths"]]))


def test_target_inputs_are_shared_and_checked(df):
    inputs = A.TargetInputs(df, TARGET, 0.5)
    pd.testing.assert_frame_equal(A.headline(df, TARGET, min_rate=0.5, inputs=inputs),
                                  A.headline(df, TARGET, min_rate=0.5))
    pd.testing.assert_frame_equal(A.overlap_with_sparsest(df, TARGET, inputs=inputs),   # of any min_rate
                                  A.overlap_with_sparsest(df, TARGET))
    pd.testing.assert_frame_equal(A.overparam_curve(df, TARGET, inputs=inputs), A.overparam_curve(df, TARGET))
    search = A.sparsest_search(df, TARGET, 0.5, inputs=inputs)
    search["search_nnz"] = -1.0                                     # a copy: the shared table is untouched
    pd.testing.assert_frame_equal(A.sparsest_search(df, TARGET, 0.5, inputs=inputs),
                                  A.sparsest_search(df, TARGET, 0.5))
    for bad in (lambda: A.headline(df, 0.99, min_rate=0.5, inputs=inputs),
                lambda: A.sparsest_search(df, TARGET, inputs=inputs),             # another min_rate
                lambda: A.method_frontier(df, TARGET, 0.5, confidence=0.9, inputs=inputs),
                lambda: A.success_rates(df.copy(), TARGET, inputs=inputs)):      # another frame
        with pytest.raises(ValueError, match="inputs of target"):
            bad()


# -- selecting runs --------------------------------------------------------------------------
def test_select_and_best_run(df, rows):
    ids = [rows[2]["run_id"], rows[0]["run_id"]]
    assert list(A.select_runs(df, ids)["run_id"]) == ids
    with pytest.raises(A.ResultsError, match="unknown run id nope"):
        A.select_runs(df, [ids[0], "nope"])
    assert list(A.select_runs(df, [ids[0][:10]])["run_id"]) == ids[:1]     # a unique prefix
    first = sorted(df["run_id"])
    shared = next(a[:k] for k in range(1, 16) for a, b in zip(first, first[1:]) if a[:k] == b[:k])
    with pytest.raises(A.ResultsError, match="several runs"):
        A.select_runs(df, [shared])
    assert A.best_run(df, "imp", TARGET)["weight_nnz"] == 20
    assert A.best_run(df, "imp", TARGET, widths=W3)["weight_nnz"] == 22
    assert A.best_run(df, "search", TARGET)["run_id"] == _id(rows, kind="search_masks", train_acc=0.97)
    with pytest.raises(A.ResultsError, match="random.*reached"):
        A.best_run(df, "random", TARGET)
    with pytest.raises(A.ResultsError, match="no runs"):
        A.best_run(df, "dwf", TARGET)


def test_model_from_row_reproduces_weights(df):
    r = df.iloc[0]
    model = A.model_from_row(r)
    for (w, b), (w0, b0) in zip(model.weights_numpy(), A.row_weights(r)):
        np.testing.assert_array_equal(w, w0)
        np.testing.assert_array_equal(b, b0)


def test_headline_search_rows_use_the_embedded_bound():
    small = (2, 2, 2, 2, 1)
    rows_ = [row("search_masks", "mask", W3, MASK_A, 0.97), row("search_masks", "mask", small, full_mask(small), 0.96)]
    h = A.headline(pd.DataFrame(rows_), TARGET).set_index("method")
    assert list(h["nnz"]) == [14, 20] and list(h["search_nnz"]) == [14, 14]   # dense (2,2,2): 4 + 4 + 4 + 2
    assert list(h["ratio"]) == [1.0, pytest.approx(20 / 14)]


def test_method_labels_split_variants():
    from cubist.report.tables import _normalise, method_label
    assert method_label("random", '{"scope": "layer", "density_scheme": "erk"}') == "random-erk"
    assert method_label("random", "{}") == "random"
    assert method_label("random", '{"scope": "global", "density_scheme": "erk"}') == "random-global"
    assert method_label("imp", '{"rewind": "step", "rewind_step": 100}') == "imp-wr"
    assert method_label("imp", '{"rewind": "init"}') == "imp"
    assert method_label("gmp", '{"density_scheme": "erk"}') == "gmp"
    assert method_label("dense", None) == "dense"
    df = pd.DataFrame({"method": ["random", "random", "gmp"], "widths": [[2, 3, 1]] * 3,
                       "params": ['{"scope": "layer", "density_scheme": "er"}',
                                  '{"scope": "layer", "density_scheme": "pyramidal"}', "{}"]})
    out = _normalise(df)
    assert list(out["method"]) == ["random-er", "random-pyramidal", "gmp"]
    assert list(out["method_base"]) == ["random", "random", "gmp"]


# -- success over inits ----------------------------------------------------------------------
Z95 = 1.959963984540054


def wilson(k, n, z=Z95):
    """The Wilson score interval written out from its formula (independent of cubist.stats)."""
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_wilson_interval_closed_forms():
    from cubist.stats import wilson_interval
    n = 10
    low, high = wilson_interval(0, n)
    assert low == 0.0 and high == pytest.approx(Z95 ** 2 / (n + Z95 ** 2), rel=1e-12)
    low, high = wilson_interval(n, n)
    assert low == pytest.approx(n / (n + Z95 ** 2), rel=1e-12) and high == 1.0
    assert wilson_interval(3, 10) == pytest.approx(wilson(3, 10), rel=1e-12)
    assert wilson_interval(3, 10) == pytest.approx((0.107791, 0.603222), abs=1e-6)   # the textbook 3 of 10
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.fixture(scope="module")
def succ():
    return pd.DataFrame(success_search_rows() + success_prune_rows() + success_dense_rows())


def _hex(masks):
    return A.pack_masks(masks)[0].hex()


def test_reached_is_the_core_definition():
    from cubist.stats import reached_target
    d = pd.DataFrame({"train_acc": [0.95, 0.9499, 0.99, None], "diverged": [False, False, True, False]})
    assert list(A.reached(d, TARGET)) == [True, False, False, False]
    assert list(A.reached(d, TARGET)) == list(reached_target(d["train_acc"].astype(float), d["diverged"], TARGET))


def test_mask_success_pooled_and_best_grid_point(succ):
    m = A.mask_success(succ, TARGET).set_index("mask")
    assert list(m.index) == sorted([_hex(MASK_R), _hex(MASK_S)]) + sorted([_hex(MASK_P), _hex(MASK_Q)]) + [_hex(MASK_T)]
    p = m.loc[_hex(MASK_P)]
    assert (p["weight_nnz"], p["runs"], p["inits"], p["successes"]) == (20, 20, 10, 4)
    assert p["rate"] == 0.2 and (p["low"], p["high"]) == pytest.approx(wilson(4, 20), rel=1e-9)
    assert (p["best_lr"], p["best_schedule"], p["best_runs"], p["best_successes"]) == (0.05, "cosine", 10, 3)
    assert p["best_rate"] == 0.3 and (p["best_low"], p["best_high"]) == pytest.approx((0.107791, 0.603222), abs=1e-6)
    q = m.loc[_hex(MASK_Q)]                       # two diverged runs at a stale 0.99: failures, not best_acc
    assert (q["successes"], q["best_successes"], q["best_rate"], q["best_acc"]) == (5, 5, 0.5, 0.97)
    r = m.loc[_hex(MASK_R)]                       # 2/10 at both points: the better accuracy decides
    assert (r["best_lr"], r["best_schedule"], r["best_rate"], r["best_acc"]) == (0.1, "step", 0.2, 0.98)
    assert r["run_id"] == A._normalise(succ).query("train_acc == 0.98")["run_id"].item()
    s = m.loc[_hex(MASK_S)]                       # 5 runs at one grid point, 10 at the other
    assert (s["runs"], s["inits"], s["successes"], s["best_runs"]) == (15, 5, 0, 5)
    assert s["best_high"] == pytest.approx(Z95 ** 2 / (5 + Z95 ** 2))
    assert m.loc[_hex(MASK_T), "best_successes"] == 9


def test_mask_success_agrees_with_the_search(succ):
    """The report's best grid point is the search's (search.phases.mask_rates), ties included."""
    phases = pytest.importorskip("search.phases")
    if not hasattr(phases, "mask_rates"):
        pytest.skip("search.phases.mask_rates not available")
    tie = [row("search_masks", "mask", W3, MASK_A, acc, seed=k, lr=lr, schedule=sch, keep_weights=False)
           for lr, sch in [(0.05, "cosine"), (0.05, "step"), (0.1, "constant")] for k, acc in enumerate([0.96, 0.9])]
    rows_ = A._normalise(pd.concat([succ, pd.DataFrame(tie)], ignore_index=True))
    rows_ = rows_[rows_["kind"] == "search_masks"]
    records = [dict(r, mask=bytes(r["mask_bits"]).hex()) for r in rows_.to_dict("records")]
    theirs = phases.mask_rates(records, TARGET)
    mine = A.mask_success(rows_, TARGET).set_index("mask")
    assert set(mine.index) == set(theirs)
    for key, r in theirs.items():
        m = mine.loc[key]
        assert (m["runs"], m["successes"], m["best_lr"], m["best_schedule"], m["best_runs"], m["best_successes"]) == (
            r.runs, r.successes, r.best_lr, r.best_schedule, r.best_runs, r.best_successes), key
        assert m["best_rate"] == r.rate and (m["best_low"], m["best_high"]) == pytest.approx(r.interval)
    assert mine.loc[_hex(MASK_A), "best_schedule"] == theirs[_hex(MASK_A)].best_schedule == "step"   # a full tie


def test_level_success(succ):
    lv = A.level_success(succ, TARGET).set_index("weight_nnz")
    assert list(lv.index) == [18, 20, 24]
    assert list(lv["masks"]) == [2, 2, 1] and list(lv["masks_reaching"]) == [1, 2, 1]
    assert list(lv["runs"]) == [35, 40, 10] and list(lv["inits"]) == [5, 10, 10]
    l20 = lv.loc[20]                              # Q (5/10) beats P (3/10)
    assert l20["mask"] == _hex(MASK_Q) and (l20["best_rate"], l20["best_runs"]) == (0.5, 10)
    assert (l20["best_low"], l20["best_high"]) == pytest.approx(wilson(5, 10))
    assert lv.loc[18, "mask"] == _hex(MASK_R) and lv.loc[18, "best_rate"] == 0.2
    assert lv.loc[18, "run_id"] == A.mask_success(succ, TARGET).set_index("mask").loc[_hex(MASK_R), "run_id"]


def test_sparsest_search_rates(succ):
    s = A.sparsest_search(succ, TARGET).iloc[0]
    assert (s["search_nnz"], s["masks_reaching"], s["masks_at_nnz"], s["masks_tried"], s["runs"]) == (18, 1, 2, 5, 85)
    assert (s["inits"], s["level_runs"], s["best_runs"], s["best_rate"]) == (5, 35, 10, 0.2)
    assert (s["best_low"], s["best_high"]) == pytest.approx(wilson(2, 10))
    assert "rate_nnz" not in s.index
    # the sparsest level's best rate (0.2) is below q = 0.5: the denser level 20 (Q, 5/10) is reported
    q = A.sparsest_search(succ, TARGET, min_rate=0.5).iloc[0]
    assert q["search_nnz"] == 18 and q["rate_nnz"] == 20 and q["rate_masks"] == 1
    assert (q["rate"], q["rate_runs"]) == (0.5, 10) and (q["rate_low"], q["rate_high"]) == pytest.approx(wilson(5, 10))
    assert A.sparsest_search(succ, TARGET, min_rate=0.3).iloc[0]["rate_masks"] == 2     # P 3/10 and Q 5/10
    t = A.sparsest_search(succ, TARGET, min_rate=0.6).iloc[0]
    assert t["rate_nnz"] == 24 and t["rate"] == 0.9
    none = A.sparsest_search(succ, TARGET, min_rate=0.95).iloc[0]
    assert math.isnan(none["rate_nnz"]) and none["rate_masks"] == 0 and pd.isna(none["rate_run_id"])
    with pytest.raises(ValueError, match="min_rate"):
        A.sparsest_search(succ, TARGET, min_rate=0)


def test_sparsest_search_never_reached_keeps_its_inits(succ):
    s = A.sparsest_search(succ, 0.999, min_rate=0.5).iloc[0]
    assert math.isnan(s["search_nnz"]) and s["inits"] == 5 and s["level_runs"] == 0 and math.isnan(s["best_rate"])


def test_smallest_dense_rates(succ):
    d = A.smallest_dense(succ, TARGET).set_index("widths")
    w = d.loc[[W3]].iloc[0]
    assert (w["runs"], w["reached_runs"], w["inits"], w["rate"], w["minimal"]) == (20, 4, 10, 0.2, True)
    assert (w["low"], w["high"]) == pytest.approx(wilson(4, 20))
    assert (w["best_lr"], w["best_successes"], w["best_runs"], w["best_rate"]) == (0.05, 3, 10, 0.3)
    assert (w["best_low"], w["best_high"]) == pytest.approx(wilson(3, 10))
    small = d.loc[[(2, 2, 2, 2, 1)]].iloc[0]
    assert (small["runs"], small["inits"], small["reached_runs"], small["minimal"]) == (8, 4, 0, False)
    assert math.isnan(small["best_acc"]) and small["high"] == pytest.approx(Z95 ** 2 / (8 + Z95 ** 2))
    per_arch = A.mask_success(succ, TARGET, kind=A.DENSE_KIND)
    assert list(per_arch["mask"]) == ["dense", "dense"] and list(per_arch["successes"]) == [0, 4]


def test_success_rates_intervals(succ, df):
    r = A.success_rates(succ, TARGET).set_index(["widths", "method", "level"])
    g = r.loc[(W3, "gmp", 22.0)]
    assert (g["runs"], g["reached_runs"], g["success_rate"], g["inits"]) == (20, 4, 0.2, 10)
    assert (g["low"], g["high"]) == pytest.approx(wilson(4, 20))
    assert (g["best_lr"], g["best_schedule"], g["best_runs"], g["best_successes"], g["best_rate"]) == (
        0.05, "cosine", 10, 3, 0.3)
    assert (g["best_low"], g["best_high"]) == pytest.approx(wilson(3, 10))
    z = r.loc[(W3, "gmp", 19.0)]
    assert z["reached_runs"] == 0 and z["low"] == pytest.approx(0, abs=1e-12)
    assert z["high"] == pytest.approx(Z95 ** 2 / (20 + Z95 ** 2))
    assert r.loc[(W3, "snip", 22.0), "low"] == pytest.approx(10 / (10 + Z95 ** 2))
    old = A.success_rates(df, TARGET).set_index(["widths", "method", "level"]).loc[(W3, "imp", 24.0)]
    assert (old["inits"], old["best_runs"]) == (2, 2) and (old["low"], old["high"]) == pytest.approx(wilson(1, 2))


def test_method_frontier_rates(succ):
    f = A.method_frontier(succ, TARGET, min_rate=0.25).set_index("method")
    g = f.loc["gmp"]
    assert (g["min_level"], g["success_rate"], g["level_runs"], g["inits"]) == (22, 0.2, 20, 10)
    assert (g["low"], g["high"]) == pytest.approx(wilson(4, 20))
    assert (g["best_rate"], g["best_runs"]) == (0.3, 10) and g["ratio"] == pytest.approx(22 / 18)
    # rate >= 0.25: gmp at 22 (3/10); the search at 20 (Q 5/10; R at 18 has 2/10)
    assert (g["rate_level"], g["rate"], g["rate_runs"], g["rate_search_nnz"]) == (22, 0.3, 10, 20)
    assert g["rate_ratio"] == pytest.approx(1.1)
    assert math.isnan(A.method_frontier(succ, TARGET, min_rate=0.5).set_index("method").loc["gmp", "rate_level"])
    assert "rate_level" not in A.method_frontier(succ, TARGET).columns


def test_headline_rates(succ):
    h = A.headline(succ, TARGET, methods=["gmp", "dwf"], min_rate=0.5).set_index("method")
    s = h.loc["search"]
    assert (s["nnz"], s["rate"], s["rate_runs"], s["inits"], s["rate_nnz"], s["rate_ratio"]) == (18, 0.2, 10, 5, 20, 1)
    assert (s["low"], s["high"]) == pytest.approx(wilson(2, 10))
    g = h.loc["gmp"]
    assert (g["nnz"], g["rate"], g["rate_runs"], g["inits"]) == (22, 0.3, 10, 10)
    assert math.isnan(g["rate_nnz"]) and math.isnan(g["rate_ratio"])
    sn = h.loc["snip"]
    assert (sn["rate"], sn["rate_nnz"], sn["rate_ratio"]) == (1.0, 22, pytest.approx(1.1))
    assert h.loc["dwf", "status"] == A.NO_RUNS and math.isnan(h.loc["dwf", "rate"])


def test_tables_never_pool_data_sets(df):
    other = df.copy()
    other["dataset_id"] = "another"
    other["run_id"] = other["run_id"] + "-b"
    both = pd.concat([df, other], ignore_index=True)
    with pytest.raises(A.ResultsError, match="never pool"):
        A.headline(both, 0.95)
    groups = A.by_dataset(both)
    assert len(groups) == 2
    alone = A.headline(df, 0.95).reset_index(drop=True)
    ids = [c for c in alone.columns if "run_id" in c]
    assert ids  # the headline names its runs: the copies' ids carry the suffix
    for part in groups.values():
        pd.testing.assert_frame_equal(A.headline(part, 0.95).reset_index(drop=True).drop(columns=ids),
                                      alone.drop(columns=ids))


# -- what was tried --------------------------------------------------------------------------
def test_best_accuracy(df, rows):
    """Whatever the target: runs, levels tried and the best non-diverged accuracy, search first."""
    t = A.best_accuracy(df)
    assert list(zip(t["method"], t["widths"])) == [
        ("search", (2, 2, 2, 2, 1)), ("search", W3), ("imp", W3), ("imp", W16), ("random", W3), ("snip", W3)]
    s = {(m, w): r for m, w, (_, r) in zip(t["method"], t["widths"], t.iterrows())}
    search = s[("search", W3)]
    # the 0.99 at 18 nnz diverged: the best is F's 0.99 at 25; at the sparsest level (18) E's 0.94
    assert (search["runs"], search["diverged_runs"], search["levels"]) == (7, 1, 3)
    assert (search["fewest_nnz"], search["most_nnz"], search["best_acc"], search["best_nnz"]) == (18, 25, 0.99, 25)
    assert search["best_at_fewest"] == 0.94
    assert search["run_id"] == _id(rows, kind="search_masks", train_acc=0.99, diverged=False)
    imp = s[("imp", W3)]
    assert (imp["runs"], imp["levels"], imp["fewest_nnz"], imp["most_nnz"], imp["best_acc"], imp["best_nnz"],
            imp["best_at_fewest"]) == (5, 3, 21, 24, 0.96, 24, 0.90)
    rnd = s[("random", W3)]
    assert (rnd["diverged_runs"], rnd["best_acc"], rnd["best_nnz"]) == (1, 0.90, 24)   # not the diverged 0.99
    dense = A.best_accuracy(pd.DataFrame(success_dense_rows()))
    assert list(dense["method"]) == ["dense", "dense"] and list(dense["best_acc"]) == [0.90, 0.97]
    diverged = A.best_accuracy(pd.DataFrame([row("prune", "gmp", W3, random_mask(W3, 20, 1), 0.99, target_nnz=20,
                                                 diverged=True)]))
    d = diverged.iloc[0]
    assert d["runs"] == 1 and math.isnan(d["best_acc"]) and d["run_id"] is None
    assert A.best_accuracy(df.iloc[:0]).empty


def test_tables_when_nobody_reached(df):
    """No run reached the target: every table is built, without raising, with its never markers."""
    h = A.headline(df, 0.9999, methods=["dwf"], min_rate=0.5)
    assert set(h["status"]) == {A.NEVER, A.NO_RUNS} and h["nnz"].isna().all() and h["rank"].isna().all()
    s = A.sparsest_search(df, 0.9999, min_rate=0.5)
    assert s["search_nnz"].isna().all() and s["rate_nnz"].isna().all() and (s["masks_reaching"] == 0).all()
    f = A.method_frontier(df, 0.9999, min_rate=0.5)
    assert (f["reached_runs"] == 0).all() and f["ratio"].isna().all() and f["rate_level"].isna().all()
    assert A.overlap_with_sparsest(df, 0.9999).empty and A.overparam_curve(df, 0.9999)["nnz"].isna().all()
    assert (A.success_rates(df, 0.9999)["reached_runs"] == 0).all()
    assert (A.level_success(df, 0.9999)["masks_reaching"] == 0).all()
