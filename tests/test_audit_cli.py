import pandas as pd
import pytest
from PIL import Image

from cubist.cli import audit as quick
from cubist.report import audit
from cubist.cli import main

from handmade import (MASK_S, W3, grid_runs, prune_rows, search_rows, success_dense_rows, success_prune_rows,
                      success_search_rows, write_store)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store")
    rows = search_rows() + prune_rows()
    write_store(path, rows)
    return path, rows


def _one_line_error(capsys, text):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cubist: error:") and text in err, err
    return err


# -- cubist audit ----------------------------------------------------------------------------
def test_audit_tables_only(store, tmp_path, capsys):
    path, rows = store
    out = tmp_path / "rep"
    assert main(["audit", str(path), "--target", "0.95", "--out", str(out), "--methods", "imp,dwf",
                 "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert "Target 0.95" in printed and "never reached" in printed and "no runs" in printed
    lines = [ln.split() for ln in printed.splitlines()]
    assert ["1", "search", "2-3-3-3-1", "20"] == lines[2][:4]
    md = (out / "report.md").read_text()
    assert "## Target 0.95" in md and "| 3 | snip | 2-3-3-3-1 | 22 |" in md
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table" in html and "<img" not in html
    assert "<code>ratio</code>" in html and "`" not in html


def test_audit_with_figures_two_targets(store, tmp_path, capsys):
    path, _ = store
    out = tmp_path / "rep"
    assert main(["audit", str(path), "--target", "0.95,0.99", "--out", str(out), "--formats", "png"]) == 0
    for tag in ("0_95", "0_99"):
        for name in ("pareto", "overparam", "best"):
            assert (out / f"{name}-{tag}.png").exists()
            assert not (out / f"{name}-{tag}.svg").exists()
    with Image.open(out / "pareto-0_95.png") as im:
        assert im.size == (900, 550)
    html = (out / "report.html").read_text()
    assert "<img src='pareto-0_95.png'" in html and "<img src='best-0_99.png'" in html
    md = (out / "report.md").read_text()
    assert "![pareto](pareto-0_95.png)" in md and "## Target 0.99" in md
    assert "Target 0.99" in capsys.readouterr().out


def test_write_report_library(store, tmp_path):
    from cubist.report.tables import load_results
    path, _ = store
    report = audit.write_report(load_results(path), [0.95], str(tmp_path), figures=False)
    assert set(report["tables"][0.95]) >= {"headline", "search", "frontier", "effective", "overlap"}
    assert sorted(p.rsplit("/", 1)[1] for p in report["files"]) == ["report.html", "report.md"]


def test_audit_missing_dir(tmp_path, capsys):
    assert main(["audit", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "does not exist")


def test_audit_empty_dir(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["audit", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "holds no results")
    assert not (tmp_path / "o").exists()


def _unreached_lines(printed):
    return [ln for ln in printed.splitlines() if "no run reached" in ln]


def test_audit_target_never_reached(store, tmp_path, capsys):
    """A target no run reached is reported, not an error: exit 0, the report says so."""
    path, _ = store
    out = tmp_path / "o"
    assert main(["audit", str(path), "--target", "0.999", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert _unreached_lines(captured.out) == [
        "Target 0.999: no run reached 0.999: the sparsest search level and each method's best accuracy are listed "
        "instead (best run: 0.9900, search 2-3-3-3-1 at 25 nnz, of 18 runs)"]
    assert "best_at_fewest" in captured.out and "wrote" in captured.out
    md = (out / "report.md").read_text()
    top = md.split("## Target 0.999", 1)[1]
    assert top.lstrip().startswith("**No run reached 0.999: the sparsest search level")
    assert "### What was tried (no run reached the target)" in md
    # the search's sparsest level (18) and its best accuracy (0.99 at 25; the 0.99 at 18 diverged)
    assert "| search | 2-3-3-3-1 | 7 | 1 | 3 | 18 | 25 | 0.9900 | 25 | 0.9400 |" in md
    assert "| random | 2-3-3-3-1 | 2 | 1 | 2 | 24 | 26 | 0.9000 | 24 | 0.9000 |" in md
    assert "never reached" in md and "_(none: no run reached 0.999)_" in md
    assert "not drawn: no pruned run and no search reached 0.999" in md
    assert (out / "pareto-0_999.png").exists()                  # drawn, with the target line
    assert not list(out.glob("overparam-*")) and not list(out.glob("best-*"))   # nothing reached: no bound, no run
    html = (out / "report.html").read_text()
    assert "<p class='unreached'><strong>No run reached 0.999" in html and "What was tried" in html


def test_audit_unreached_beside_reached(store, tmp_path, capsys):
    """--target 0.95,0.999: the 0.95 report is whole, the 0.999 section is marked unreached."""
    path, _ = store
    out = tmp_path / "o"
    assert main(["audit", str(path), "--target", "0.95,0.999", "--out", str(out), "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert len(_unreached_lines(printed)) == 1 and "no run reached 0.999" in _unreached_lines(printed)[0]
    assert "Target 0.95: fewest nonzero weights reaching it" in printed
    md = (out / "report.md").read_text()
    reached, unreached = md.split("## Target 0.95", 1)[1].split("## Target 0.999")
    assert "| 3 | snip | 2-3-3-3-1 | 22 |" in reached and "No run reached" not in reached
    assert "What was tried" not in reached
    assert unreached.lstrip().startswith("**No run reached 0.999") and "What was tried" in unreached
    report = audit.write_report(audit.A.load_results(path), [0.95, 0.999], str(tmp_path / "lib"), figures=False)
    assert report["unreached"] == [0.999] and set(report["tables"]) == {0.95, 0.999}
    alone = audit.write_report(audit.A.load_results(path), [0.95], str(tmp_path / "alone"), figures=False)
    for key, table in alone["tables"][0.95].items():   # the unreached target changes nothing of the other
        pd.testing.assert_frame_equal(report["tables"][0.95][key], table, obj=key)


def test_audit_all_unreached(store, tmp_path, capsys):
    path, _ = store
    out = tmp_path / "o"
    assert main(["audit", str(path), "--target", "0.995,0.999", "--out", str(out), "--formats", "png"]) == 0
    lines = _unreached_lines(capsys.readouterr().out)
    assert [ln.split(":")[0] for ln in lines] == ["Target 0.995", "Target 0.999"]
    md = (out / "report.md").read_text()
    assert md.count("**No run reached") == 2 and "## Target 0.995" in md and "## Target 0.999" in md
    assert (out / "report.html").exists() and (out / "pareto-0_995.png").exists()


def test_audit_all_diverged(tmp_path, capsys):
    path = tmp_path / "store"
    write_store(path, grid_runs("search_masks", "mask", W3, MASK_S, 0.05, "cosine", 3, 0, diverged=3))
    assert main(["audit", str(path), "--out", str(tmp_path / "o"), "--no-figures"]) == 0
    assert _unreached_lines(capsys.readouterr().out)[0].endswith("listed instead (all 3 runs diverged)")
    assert "**No run reached 0.95" in (tmp_path / "o" / "report.md").read_text()


def test_audit_per_dataset_one_unreached(store, tmp_path, capsys):
    """Two data sets, one reaching 0.95 and one not: both reports, the second marked, exit 0."""
    path, _ = store
    df = audit.A.load_results(path)
    other = df.assign(dataset_id="another", run_id=df["run_id"] + "-b", train_acc=df["train_acc"] * 0.8)
    both = pd.concat([df, other], ignore_index=True)
    out = tmp_path / "o"
    report = audit.write_report(both, [0.95], str(out), figures=False)
    labels = {label: t for label, t in report["tables"]}
    assert len(labels) == 2
    (missed,) = [label for label in labels if "another" in label]
    assert report["unreached"] == [(missed, 0.95)]
    index = (out / "report.md").read_text()
    assert "another" in index and "; no run reached 0.95" in index and index.count("no run reached") == 1
    folders = {p.parent.name: p.read_text() for p in out.glob("*/report.md")}
    assert len(folders) == 2
    (unreached,) = [t for name, t in folders.items() if "another" in name]
    (reached,) = [t for name, t in folders.items() if "another" not in name]
    assert "**No run reached 0.95" in unreached and "No run reached" not in reached
    assert "| 3 | snip | 2-3-3-3-1 | 22 |" in reached


def test_audit_cli_per_dataset_one_unreached(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write_store(a, search_rows() + prune_rows())
    low = [dict(r, dataset_id="another", train_acc=0.5, run_id=r["run_id"] + "-b") for r in search_rows()]
    write_store(b, low)
    assert main(["audit", str(a), str(b), "--out", str(tmp_path / "o"), "--no-figures"]) == 0
    lines = _unreached_lines(capsys.readouterr().out)
    assert len(lines) == 1 and lines[0].startswith("Data set ") and "another" in lines[0]


def test_quick_audit_unreached_keeps_runs(tmp_path, capsys, monkeypatch):
    """--quick when nothing reached the target: the report is written and the runs are kept."""
    import pruners
    from search import phases
    monkeypatch.setattr(phases, "search_masks", lambda *a, store, **k: store.write(search_rows()))
    monkeypatch.setattr(pruners, "run_sweep", lambda cfg, store, **k: None)
    out = tmp_path / "q"
    assert main(["audit", "--quick", "--out", str(out), "--target", "0.999", "--quiet", "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert len(_unreached_lines(printed)) == 1
    assert f"the runs are kept in {out / 'runs'}" in printed
    assert "**No run reached 0.999" in (out / "report.md").read_text()


def test_audit_bad_target_and_no_results(tmp_path, capsys):
    assert main(["audit", "x", "--target", "95"]) == 2
    _one_line_error(capsys, "not an accuracy")
    assert main(["audit"]) == 2
    _one_line_error(capsys, "RESULTS")


@pytest.fixture(scope="module")
def success_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("success")
    write_store(path, success_search_rows() + success_prune_rows() + success_dense_rows())
    return path


def test_audit_success_over_inits(success_store, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["audit", str(success_store), "--out", str(out), "--no-figures", "--methods", "gmp,snip"]) == 0
    printed = capsys.readouterr().out
    lines = [ln.split() for ln in printed.splitlines()]
    # search: fewest nnz 18 (R), best mask there 2/10 at one grid point; 0.5 first reached at 20 (Q, 5/10)
    assert lines[2] == ["1", "search", "2-3-3-3-1", "18", *lines[2][4:6], "2/10", "=", "0.20", "[0.06,", "0.51]",
                        "5", "20", "ok"]
    assert "3/10 = 0.30 [0.11, 0.60]" in printed and "10/10 = 1.00 [0.72, 1.00]" in printed
    md = (out / "report.md").read_text()
    assert "### Success over inits per nnz" in md
    assert "| 20 | search | 2-3-3-3-1 | 2 | 2 | 10 | 40 | — | 5/10 = 0.50 [0.24, 0.76] | 0.0500 | cosine |" in md
    assert "| 18 | search | 2-3-3-3-1 | 2 | 1 | 5 | 35 | — | 2/10 = 0.20 [0.06, 0.51] | 0.1000 | step |" in md
    assert ("| 22 | gmp | 2-3-3-3-1 | — | — | 10 | 20 | 4/20 = 0.20 [0.08, 0.42] | 3/10 = 0.30 [0.11, 0.60] "
            "| 0.0500 | cosine |") in md
    assert "| 19 | gmp | 2-3-3-3-1 | — | — | 10 | 20 | 0/20 = 0.00 [0.00, 0.16] | 0/10 = 0.00 [0.00, 0.28] |" in md
    # phase 1: (3,3,3) pooled 4/20, best grid point 3/10
    assert ("| 2-3-3-3-1 | 27 | 20 | 10 | 4 | 4/20 = 0.20 [0.08, 0.42] | 3/10 = 0.30 [0.11, 0.60] | 0.0500 | cosine "
            "| 0.9700 | yes |") in md
    # how many inits and runs stand behind the numbers
    assert "85 runs of 5 masks on 3 grid points (lr x schedule), K = 5 to 10 inits per mask and grid point" in md
    assert ("The search of 2-3-3-3-1: some run reached 0.95 at 18 nnz; its best mask there: "
            "2/10 = 0.20 [0.06, 0.51] (35 runs at that nnz). At least 0.5: 20 nnz (5/10 = 0.50 [0.24, 0.76]).") in md
    assert "Phase 1: 28 runs of 2 dense architectures on 2 grid points, K = 4 to 10 inits" in md
    assert "The pruners: 50 runs, K = 10 inits per budget and grid point" in md and "K = 1 a grid" not in md
    html = (out / "report.html").read_text()
    assert "Success over inits per nnz" in html and "5/10 = 0.50 [0.24, 0.76]" in html


def _tables_each_alone(df, target, methods, min_rate):
    """:func:`audit.audit_tables` as each table computes it alone: no shared inputs, every table
    normalising the frame as given."""
    A = audit.A
    levels, success = A.level_success(df, target), A.success_rates(df, target)
    overlap = A.overlap_with_sparsest(df, target)
    return {"headline": A.headline(df, target, methods, min_rate), "search": A.sparsest_search(df, target, min_rate),
            "levels": levels, "dense": A.smallest_dense(df, target),
            "frontier": A.method_frontier(df, target, min_rate), "success": success,
            "by_nnz": audit.success_by_nnz(levels, success),
            "effective": A.effective_sparsity(df[df["kind"] == A.PRUNE_KIND]),
            "overparam": A.overparam_curve(df, target), "overlap": overlap,
            "overlap_summary": A.overlap_summary(overlap), "best_accuracy": A.best_accuracy(df),
            "method_audit": A.method_audit(df, target)}


@pytest.mark.parametrize("which", ["store", "success_store"])
@pytest.mark.parametrize("min_rate", [None, 0.5])
def test_audit_tables_share_inputs_identically(request, which, min_rate):
    """Normalising once and sharing one TargetInputs per target changes no table."""
    from cubist.store import ResultStore
    store = request.getfixturevalue(which)
    path = store[0] if which == "store" else store
    raw = ResultStore(path).load()
    for target in (0.999, 0.95, 0.99):   # 0.999: no run reached it
        alone = _tables_each_alone(raw, target, ["imp", "dwf"], min_rate)
        for df in (raw, audit.A.load_results(path)):
            shared = audit.audit_tables(df, target, ["imp", "dwf"], min_rate)
            assert shared.keys() == alone.keys()
            for key in alone:
                pd.testing.assert_frame_equal(shared[key], alone[key], check_exact=True, obj=key)
    assert len(shared["overlap"]) or which == "success_store"   # the overlap is compared on real rows too


def test_audit_tables_normalise_once(success_store, monkeypatch):
    from cubist.store import ResultStore
    A = audit.A
    loaded, raw = A.load_results(success_store), ResultStore(success_store).load()
    calls, normalise = [], A._normalise
    monkeypatch.setattr(A, "_normalise", lambda df: calls.append(len(df)) or normalise(df))
    audit.audit_tables(loaded, 0.95)
    assert calls == []                   # load_results normalised it
    audit.audit_tables(raw, 0.95)
    assert calls == [len(raw)]           # once, the whole frame


def test_audit_min_rate(success_store, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["audit", str(success_store), "--out", str(out), "--no-figures", "--min-rate", "0.6"]) == 0
    md = (out / "report.md").read_text()
    assert "At least 0.6: 24 nnz (9/10 = 0.90 [0.60, 0.98])." in md
    tables = audit.audit_tables(audit.A.load_results(success_store), 0.95, min_rate=0.95)
    rate_nnz = audit.report_view("headline", tables).set_index("method")["rate_nnz"]
    assert rate_nnz.isna().to_dict() == {"search": True, "gmp": True, "snip": False} and rate_nnz["snip"] == 22
    assert "No mask reached it in at least 0.95 of its runs" in " ".join(
        audit.target_notes(audit.A.load_results(success_store), tables, 0.95, 0.95))
    capsys.readouterr()
    for bad in ("0", "1.5"):
        assert main(["audit", str(success_store), "--out", str(out), "--min-rate", bad]) == 2
        _one_line_error(capsys, "--min-rate")


def test_audit_search_not_reached(tmp_path, capsys):
    path = tmp_path / "store"
    write_store(path, success_prune_rows() + grid_runs("search_masks", "mask", W3, MASK_S, 0.05, "cosine", 5, 0))
    out = tmp_path / "rep"
    assert main(["audit", str(path), "--out", str(out), "--no-figures"]) == 0
    md = (out / "report.md").read_text()
    assert "The search of 2-3-3-3-1 did not reach 0.95: none of its 5 runs (K = 5) reached it." in md
    assert "| — | search | 2-3-3-3-1 | — |" in md and "never reached" in capsys.readouterr().out


def test_quick_audit_end_to_end(tmp_path, capsys):
    """--quick runs the real search and pruners (2 epochs here), then audits their store."""
    from cubist.report.tables import load_results
    out = tmp_path / "q"
    argv = ["audit", "--quick", "--out", str(out), "--epochs", "2", "--target", "0.5", "--quiet"]
    assert main(argv) == 0
    df = load_results([str(out / "runs")])
    assert set(df["kind"]) == {"search_masks", "prune"}
    search = df[df["kind"] == "search_masks"]
    assert {tuple(w) for w in search["widths"]} == {(2, *quick.QUICK_HIDDEN, 1)}
    assert search["weight_nnz"].nunique() == 1  # sparsest first: a constant predictor already has 0.5
    prune = df[df["kind"] == "prune"]
    assert set(prune["method_base"]) == set(quick.QUICK_METHODS)
    assert {tuple(w) for w in prune["widths"]} == set(quick.QUICK_WIDTHS)
    assert set(prune["target_nnz"]) == set(quick.QUICK_NNZ)
    assert (prune["epochs"] == 2).all() and (prune["weight_nnz"] == prune["target_nnz"]).all()
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert list(out.rglob("*.png")) and list(out.rglob("*.svg"))
    printed = capsys.readouterr().out
    assert "search" in printed and "gmp" in printed
    n = len(df)
    assert main(argv) == 0  # a rerun trains nothing new
    assert len(load_results([str(out / "runs")])) == n


def test_audit_says_what_it_reads_on_stderr_unless_quiet(store, tmp_path, capsys, monkeypatch):
    """Reading big stores takes a while: a bar per store on stderr (once it takes a moment), then
    what comes next; --quiet (now also without --quick) hides them."""
    from cubist.report import tables
    path, rows = store
    monkeypatch.setattr(tables, "PROGRESS_DELAY_S", 0.0)   # this small store is read at once ...
    monkeypatch.setattr(tables, "ROWS_NOTICE", 1)          # ... and its rows prepared at once
    assert main(["audit", str(path), "--target", "0.95", "--out", str(tmp_path / "a"), "--no-figures"]) == 0
    err = capsys.readouterr().err
    assert f"reading {path}" in err and "shard" in err
    assert f"preparing the rows of {len({r['run_id'] for r in rows}):,} runs..." in err
    assert "writing the report..." in err
    assert main(["audit", str(path), "--target", "0.95", "--out", str(tmp_path / "b"), "--no-figures",
                 "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_quick_audit_prints_its_plan_and_estimate_before_training(tmp_path, capsys, monkeypatch):
    import pruners
    from search import phases
    seen = []

    def first_training(*a, store, **k):
        seen.append(capsys.readouterr().out)   # what was printed before any training
        store.write(search_rows())

    monkeypatch.setattr(phases, "search_masks", first_training)
    monkeypatch.setattr(pruners, "run_sweep", lambda cfg, store, **k: None)
    assert main(["audit", "--quick", "--out", str(tmp_path / "q"), "--quiet", "--no-figures"]) == 0
    before = seen[0].splitlines()
    assert before[0].startswith(f"quick audit into {tmp_path / 'q'}, 50 epochs per run; the plan, with "
                                "estimated times") and "an estimate" in before[0]
    # every level of the (4,2,5) orbits (4,220 masks, one grid point, one init): a bound, sparsest first
    assert before[1].startswith("  search 2-4-2-5-1, at most 14 levels (18-31 weights), sparsest level first")
    assert ": 4,220 runs, about " in before[1]
    assert any(ln.startswith("  prune gmp 2-4-2-5-1 at 20, 27 weights: 2 runs, about ") for ln in before)
    assert any(ln.startswith("  prune synflow 2-16-16-16-1 at 20, 27, 40, 65 weights: 4 runs, about ") for ln in before)
    assert before[-2].startswith("  the report and its figures: about ")
    assert before[-1].startswith("  estimated total: about ") and "compiles the search engine" in before[-1]


def test_quick_plan_estimates_from_its_cost_model_and_counts_stored_runs(tmp_path):
    from cubist.data import Dataset
    from cubist.store import ResultStore
    from pruners.runner import run_sweep
    from search.phases import Grid, search_masks
    store, data, grid = ResultStore(tmp_path / "runs"), Dataset.spiral(), Grid(lrs=(0.05,), schedules=("cosine",))
    sweeps = quick.quick_sweeps(methods=("gmp",), widths=((2, 4, 2, 5, 1),), epochs=1, device="cpu")
    fresh = quick.quick_plan(store, data, grid, max_nnz=19, sweeps=sweeps)
    assert [(s.runs, s.stored) for s in fresh] == [(38 + 176, 0), (2, 0), (0, 0)]
    assert fresh[0].seconds == pytest.approx(214 * 50 * quick.SEARCH_S_PER_RUN_EPOCH)
    assert fresh[1].seconds == pytest.approx(1 * quick.PRUNE_S_PER_CHUNK_EPOCH["narrow"])   # one chunk, 1 epoch
    assert fresh[2].seconds == quick.REPORT_S
    run_sweep(sweeps[0], store=store)
    search_masks(quick.QUICK_HIDDEN, 0.95, grid, store=store, max_nnz=18, quiet=True, log=lambda *a: None)
    again = quick.quick_plan(store, data, grid, max_nnz=19, sweeps=sweeps)
    assert (again[0].runs, again[0].stored) == (214, 38)                 # level 18 is stored
    assert again[0].seconds == pytest.approx(176 * 50 * quick.SEARCH_S_PER_RUN_EPOCH)
    assert (again[1].runs, again[1].stored, again[1].seconds) == (2, 2, 0)
    assert again[1].line() == "  prune gmp 2-4-2-5-1 at 20, 27 weights: 2 runs, 2 of them stored, about 0 s"


# -- cubist plot -----------------------------------------------------------------------------
def test_plot_run_ids(store, tmp_path, capsys):
    path, rows = store
    out = tmp_path / "two.png"
    ids = f"{rows[0]['run_id']},{rows[-1]['run_id']}"
    assert main(["plot", str(path), "--run-id", ids, "--out", str(out), "--what", "network,lines",
                 "--dpi", "50"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size == (2 * 200, 2 * 200)


def test_plot_best_both_formats(store, tmp_path, capsys):
    path, _ = store
    out = tmp_path / "best.png"
    assert main(["plot", str(path), "--best", "--method", "search,imp", "--target", "0.95", "--out", str(out),
                 "--formats", "png,svg", "--what", "network"]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "best.png").exists() and (tmp_path / "best.svg").exists()
    assert "best.svg" in printed


@pytest.mark.parametrize("argv,text", [
    (["--run-id", "deadbeef", "--out", "{tmp}/x.png"], "unknown run id deadbeef"),
    (["--best", "--method", "random", "--out", "{tmp}/x.png"], "reached train accuracy"),
    (["--best", "--method", "dwf", "--out", "{tmp}/x.png"], "no runs of method 'dwf'"),
    (["--best", "--out", "{tmp}/x.png"], "--best needs --method"),
    (["--run-id", "a", "--out", "{tmp}/x.jpg"], "cannot tell the format"),
    (["--run-id", "a", "--out", "{tmp}/nodir/x.png"], "does not exist"),
])
def test_plot_bad_input(store, tmp_path, capsys, argv, text):
    path, _ = store
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["plot", str(path)] + argv) == 2
    _one_line_error(capsys, text)


def test_plot_empty_or_missing_store(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty"), "--run-id", "a", "--out", str(tmp_path / "x.png")]) == 2
    _one_line_error(capsys, "holds no results")
    assert main(["plot", str(tmp_path / "missing"), "--run-id", "a", "--out", str(tmp_path / "x.png")]) == 2
    _one_line_error(capsys, "does not exist")
