"""The audit's answer to issue 12's new question (do PILoT, DWF and LRR elude the sparsest models?),
against hand counts on hand-made rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cubist.report import tables as A
from cubist.report.audit import audit_tables, report_view, write_report
from cubist.stats import wilson_interval
from search.enumerate import canonical_mask

from handmade import W3, W16, grid_runs, random_mask, row, write_store

T = 0.95


def masks_of(w1, w2, w3, w4):
    return [np.array(m, dtype=bool) for m in (w1, w2, w3, w4)]


# (2,3,3,3,1) masks written out, so every count below is a hand count
ONES = [[1, 1]] * 3
M18 = masks_of(ONES, [[1, 0, 0], [0, 1, 0], [1, 0, 1]], [[1, 0, 0], [0, 1, 1], [0, 1, 1]], [[1, 1, 1]])
#      6 + 4 + 5 + 3 = 18 weights, every unit on a path: nothing inactive
P20 = masks_of(ONES, [[1, 1, 0], [0, 1, 1], [1, 0, 1]], [[1, 0, 0], [0, 1, 1], [0, 1, 1]], [[1, 1, 1]])
#      6 + 6 + 5 + 3 = 20, nothing inactive
DEAD26 = masks_of(ONES, [[1] * 3] * 3, [[1] * 3] * 3, [[1, 1, 0]])
#      6 + 9 + 9 + 2 = 26; the third unit of hidden layer 3 feeds nothing: its 3 incoming weights are inactive
#      (effective 23) and it is one dead unit


def permuted(masks, perm):
    """``masks`` with the units of hidden layer 1 permuted (rows of W1, columns of W2): the same orbit."""
    out = [m.copy() for m in masks]
    out[0], out[1] = masks[0][perm], masks[1][:, perm]
    return out


CR = canonical_mask(M18)          # the search stores an orbit's canonical representative
PERM18 = permuted(CR, [2, 0, 1])  # a pruner finds the same orbit, labelled otherwise
assert not all((a == b).all() for a, b in zip(PERM18, CR))


def rows():
    g = lambda masks, lr, n, k: grid_runs("search_masks", "mask", W3, masks, lr, "cosine", n, k)  # noqa: E731
    search = g(CR, 0.05, 10, 2) + g(CR, 0.1, 10, 1) + g(P20, 0.05, 5, 0)   # 18: 3 of 20 runs; 20: 0 of 5
    lrr = {"method": "lrr", "cycles": 5}
    p = lambda masks, acc, seed, F, **kw: row("prune", "lrr", W3, masks, acc, seed=seed, target_nnz=F,  # noqa: E731
                                              params=lrr, keep_weights=False, **kw)
    prune = [p(PERM18, 0.96, 0, 18), p(M18, 0.90, 1, 18), p(M18, 0.99, 2, 18, diverged=True),
             p(P20, 0.97, 0, 20),
             p(DEAD26, 0.96, 0, 26), p(DEAD26, 0.93, 1, 26),
             # dwf at width 16 never reaches; budgets 15 and 25 (the smallest at or above 18: 25)
             row("prune", "dwf", W16, random_mask(W16, 15, 1), 0.80, target_nnz=15, params={"method": "dwf"},
                 keep_weights=False),
             row("prune", "dwf", W16, random_mask(W16, 25, 2), 0.90, target_nnz=25, params={"method": "dwf"},
                 keep_weights=False),
             # gmp: not one of the question's methods
             row("prune", "gmp", W3, M18, 0.97, target_nnz=18, params={"method": "gmp"}, keep_weights=False)]
    return search + prune


@pytest.fixture(scope="module")
def df():
    return A.normalised(pd.DataFrame(rows()))


def test_counts_of_the_hand_masks():   # 9 hidden biases and the output's
    from cubist.masks import mask_counts
    assert mask_counts(M18) == {"weight_nnz": 18, "bias_nnz": 10, "effective_nnz": 18, "dead_units": 0}
    c = mask_counts(DEAD26)
    assert (c["weight_nnz"], c["effective_nnz"], c["dead_units"]) == (26, 23, 1)


def test_method_audit_against_hand_counts(df):
    t = A.method_audit(df, T)
    assert list(zip(t["widths"], t["method"])) == [(W3, "gmp"), (W3, "lrr"), (W16, "dwf")]
    lrr = t.iloc[1]
    # distance from the sparsest: the search reaches 18 (CR, 3 of 20 runs); lrr's fewest reaching is 18
    assert (lrr["runs"], lrr["reached_runs"], lrr["search_nnz"], lrr["nnz"], lrr["level"], lrr["ratio"]) == \
        (6, 3, 18, 18, 18, 1.0)
    # success at 18: 1 of its 3 runs (the diverged one never counts)
    low, high = wilson_interval(1, 3, 0.95)
    assert (lrr["level_successes"], lrr["level_runs"]) == (1, 3)
    assert lrr["level_rate"] == pytest.approx(1 / 3) and lrr["level_low"] == pytest.approx(low)
    assert lrr["level_high"] == pytest.approx(high)
    assert (lrr["at_search"], lrr["at_successes"], lrr["at_runs"]) == (18, 1, 3)
    # inactive weights: the two DEAD26 runs, 3 each, of 6 runs; 1 of the 3 reaching runs
    assert lrr["runs_with_inactive"] == pytest.approx(2 / 6)
    assert lrr["inactive"] == pytest.approx(6 / 6)
    assert lrr["dead_units"] == pytest.approx(2 / 6)
    assert lrr["reaching_with_inactive"] == pytest.approx(1 / 3)
    # mask or weights: PERM18 is CR's orbit (3 of 20 search runs), P20 the search's mask itself (0 of 5);
    # DEAD26 was never searched
    low, high = wilson_interval(3, 25, 0.95)
    assert (lrr["reaching_masks"], lrr["matched_masks"], lrr["retrain_masks"], lrr["retrain_runs"],
            lrr["retrain_successes"]) == (3, 2, 2, 25, 3)
    assert lrr["retrain_rate"] == pytest.approx(3 / 25) and lrr["retrain_low"] == pytest.approx(low)
    assert lrr["retrain_high"] == pytest.approx(high)
    dead_id = df.loc[(df["method"] == "lrr") & (df["train_acc"] == 0.96) & (df["weight_nnz"] == 26), "run_id"]
    assert lrr["missing_run_ids"] == dead_id.iloc[0]


def test_method_audit_of_a_method_that_never_reaches(df):
    dwf = A.method_audit(df, T).iloc[2]
    assert (dwf["runs"], dwf["reached_runs"], dwf["search_nnz"]) == (2, 0, 18)
    assert np.isnan(dwf["nnz"]) and np.isnan(dwf["ratio"]) and np.isnan(dwf["retrain_rate"])
    assert (dwf["level_runs"], dwf["at_search"], dwf["at_successes"], dwf["at_runs"]) == (0, 25, 0, 1)
    assert np.isnan(dwf["reaching_with_inactive"]) and dwf["missing_run_ids"] == ""


def test_method_audit_without_search_rows():
    df = A.normalised(pd.DataFrame([r for r in rows() if r["kind"] == "prune"]))
    t = A.method_audit(df, T)
    lrr = t[t["method"] == "lrr"].iloc[0]
    assert np.isnan(lrr["search_nnz"]) and np.isnan(lrr["ratio"]) and np.isnan(lrr["at_search"])
    assert (lrr["reaching_masks"], lrr["matched_masks"], lrr["retrain_masks"]) == (3, 0, 0)
    assert len(lrr["missing_run_ids"].split(",")) == 3
    assert A.method_audit(df.iloc[:0], T).empty


def test_question_methods():
    assert [A.is_question_method(m) for m in ("pilot", "dwf", "lrr", "imp+pilot", "lrr+pilot", "dwf-d4")] == [True] * 6
    assert [A.is_question_method(m) for m in ("gmp", "imp", "imp-wr", "spred", None)] == [False] * 5


def test_report_section_on_a_small_store(tmp_path):
    store = write_store(tmp_path / "runs", rows())
    out = write_report(A.load_results([store.path]), [T], str(tmp_path / "audit"), figures=False,
                       sources=[store.path])
    md = (tmp_path / "audit" / "report.md").read_text()
    part = md.split("### Do PILoT, DWF and LRR elude the sparsest models?")[1].split("### The same for every")[0]
    lines = [line for line in part.splitlines() if line.startswith("| 2-")]
    assert len(lines) == 2   # lrr (3,3,3) and dwf (16); gmp is in the next table
    lrr = lines[0].split(" | ")
    assert lrr[:6] == ["| 2-3-3-3-1", "lrr", "6", "18", "18", "1"]
    assert "1/3 = 0.33 [" in lrr[6] and lrr[7] == "18" and "1/3 = 0.33 [" in lrr[8]
    assert lrr[9:13] == ["0.3333", "1", "0.3333", "0.3333"]
    assert lrr[13].startswith("3/25 = 0.12 [") and lrr[13].endswith("(2 of 3 masks) |")
    assert "| 2-16-16-16-1 | dwf | 2 | 18 | — | — | — | 25 | 0/1 = 0.00" in lines[1]
    assert "— (never reached)" in lines[1]
    dead_id = out["tables"][T]["method_audit"].iloc[1]["missing_run_ids"]
    assert f"`cubist search retrain {store.path} --run-id {dead_id[:8]} --seeds 10 --out RETRAIN`" in part
    others = md.split("### The same for every other method")[1].split("###")[0]
    assert "| 2-3-3-3-1 | gmp |" in others and "3/20 = 0.15 [" in others   # M18 is CR's orbit
    assert "--run-id" not in others
    assert "`cubist search retrain" in (tmp_path / "audit" / "report.html").read_text().replace("<code>", "`")


def test_cli_prints_the_question(tmp_path, capsys):
    from cubist.cli import main
    store = write_store(tmp_path / "runs", rows())
    assert main(["audit", store.path, "--out", str(tmp_path / "a"), "--no-figures", "--quiet"]) == 0
    out = capsys.readouterr().out.split("PILoT, DWF, LRR and their combinations")[1]
    lines = out.splitlines()
    assert lines[2].split()[:6] == ["2-3-3-3-1", "lrr", "6", "18", "18", "1"]
    assert lines[3].split()[:2] == ["2-16-16-16-1", "dwf"] and "gmp" not in out.split("wrote")[0]
    assert f"cubist search retrain {store.path} --run-id " in out and "(2 of 3 masks)" in lines[2]


def test_report_view_parts(df):
    tabs = audit_tables(df, T)
    assert list(report_view("question", tabs)["method"]) == ["lrr", "dwf"]
    assert list(report_view("question_others", tabs)["method"]) == ["gmp"]


def test_fixed_init_masks_match_only_themselves_from_the_same_init():
    """Under a fixed init permuted masks differ: a pruner run from a checkpoint matches only search
    runs of its own mask from that checkpoint, never the random-init search's orbit."""
    ck = "checkpoint:abc"
    search = [row("search_masks", "mask", W3, CR, acc, seed=k, init=ck, init_seed=None, keep_weights=False)
              for k, acc in enumerate((0.96, 0.90, 0.97, 0.80))]
    g = lambda masks, acc, seed, **kw: row("prune", "lrr", W3, masks, acc, seed=seed, target_nnz=18,  # noqa: E731
                                           params={"method": "lrr"}, keep_weights=False, **kw)
    random_search = grid_runs("search_masks", "mask", W3, CR, 0.05, "cosine", 10, 2)
    fixed = [g(PERM18, 0.96, 0, init=ck, init_seed=None), g(CR, 0.97, 1, init=ck, init_seed=None)]
    lrr = A.method_audit(A.normalised(pd.DataFrame(random_search + search + fixed)), T).iloc[0]
    assert (lrr["reaching_masks"], lrr["matched_masks"], lrr["retrain_masks"], lrr["retrain_runs"],
            lrr["retrain_successes"]) == (2, 1, 1, 4, 2)
    assert lrr["missing_run_ids"] == fixed[0]["run_id"]
    # the same two masks from random inits: both are CR's orbit, matched to the random-init search only
    rnd = [g(PERM18, 0.96, 0), g(CR, 0.97, 1)]
    lrr = A.method_audit(A.normalised(pd.DataFrame(random_search + search + rnd)), T).iloc[0]
    assert (lrr["reaching_masks"], lrr["matched_masks"], lrr["retrain_masks"], lrr["retrain_runs"],
            lrr["retrain_successes"]) == (2, 2, 1, 10, 2)
    assert lrr["missing_run_ids"] == ""


def test_retrain_cell():
    from cubist.report.audit import retrain_text
    base = {"reached_runs": 1, "matched_masks": 0, "reaching_masks": 1}
    assert retrain_text(base) == "no rows (1 mask reaching)"
    assert retrain_text({**base, "reaching_masks": 2}) == "no rows (2 masks reaching)"
    assert retrain_text({**base, "reached_runs": 0}) == "— (never reached)"
    assert retrain_text({**base, "matched_masks": 1, "retrain_successes": 0, "retrain_runs": 60, "retrain_low": 0.0,
                         "retrain_high": 0.06}) == "0/60 = 0.00 [0.00, 0.06] (1 of 1 masks)"


def test_retrain_rows_answer_for_masks_the_search_never_trained():
    """Rows of ``cubist search retrain --out`` (kind search_retrain) fill the mask-or-weights column
    for a mask no search trained (DEAD26), count a run the search also trained once, and change no
    search table."""
    g = lambda masks, lr, n, k: grid_runs("search_retrain", "retrain", W3, masks, lr, "cosine", n, k)  # noqa: E731
    dead = g(DEAD26, 0.05, 4, 1)            # DEAD26 from 4 fresh inits: 1 reaches
    again = g(P20, 0.05, 5, 0)               # the search's own 5 runs of P20, retrained: the same runs
    extra = g(P20, 0.1, 2, 2)                # and 2 more of P20 at another grid point: both reach
    base = rows()
    df = A.normalised(pd.DataFrame(base + dead + again + extra))
    lrr = A.method_audit(df, T).iloc[1]
    # CR's orbit 3 of 20, P20 0 of 5 (search) + 2 of 2 (retrain; the 5 repeats counted once), DEAD26 1 of 4
    assert (lrr["reaching_masks"], lrr["matched_masks"], lrr["retrain_masks"], lrr["retrain_runs"],
            lrr["retrain_successes"], lrr["missing_run_ids"]) == (3, 3, 3, 31, 6, "")
    plain = A.normalised(pd.DataFrame(base))
    for name in ("sparsest_search", "mask_success", "level_success"):
        got, want = getattr(A, name)(df, T), getattr(A, name)(plain, T)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    # retrain rows alone are no search: no bound, nothing searched
    alone = A.normalised(pd.DataFrame([r for r in base if r["kind"] == "prune"] + dead))
    assert A.sparsest_search(alone, T).empty
    lrr = A.method_audit(alone, T).iloc[1]
    assert np.isnan(lrr["search_nnz"]) and (lrr["matched_masks"], lrr["retrain_runs"]) == (1, 4)


def test_rate_text_keeps_small_rates_visible():
    """Two decimals would print 3 of 4,500 runs as 0.00 [0.00, 0.00]: small values get two
    significant digits, everything else two decimals (the interval from cubist.stats)."""
    from cubist.report.audit import rate_text
    low, high = wilson_interval(3, 4500)
    assert 0.0002 < low < 0.0003 and 0.001 < high < 0.003
    assert rate_text(3, 4500, low, high) == f"3/4500 = 0.00067 [{low:.2g}, {high:.2g}]"
    assert rate_text(0, 90, 0.0, 0.041) == "0/90 = 0.00 [0.00, 0.04]"
    assert rate_text(1, 30, 0.0059, 0.167) == "1/30 = 0.03 [0.01, 0.17]"
    assert rate_text(1, 250, 0.0007, 0.022) == "1/250 = 0.004 [0.0007, 0.02]"
    assert rate_text(0, 0, 0.0, 1.0) == "—"
