import pytest
from PIL import Image

from cubist import audit
from cubist.cli import main

from handmade import prune_rows, search_rows, write_store


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
    from cubist.analysis import load_results
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


def test_audit_target_never_reached(store, tmp_path, capsys):
    path, _ = store
    assert main(["audit", str(path), "--target", "0.999", "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "no run reached train accuracy 0.999")


def test_audit_bad_target_and_no_results(tmp_path, capsys):
    assert main(["audit", "x", "--target", "95"]) == 2
    _one_line_error(capsys, "not an accuracy")
    assert main(["audit"]) == 2
    _one_line_error(capsys, "RESULTS")


def test_quick_audit_end_to_end(tmp_path, capsys):
    """--quick runs the real search and pruners (2 epochs here), then audits their store."""
    from cubist.analysis import load_results
    out = tmp_path / "q"
    argv = ["audit", "--quick", "--out", str(out), "--epochs", "2", "--target", "0.5", "--quiet"]
    assert main(argv) == 0
    df = load_results([str(out / "runs")])
    assert set(df["kind"]) == {"search_masks", "prune"}
    search = df[df["kind"] == "search_masks"]
    assert {tuple(w) for w in search["widths"]} == {(2, *audit.QUICK_HIDDEN, 1)}
    assert search["weight_nnz"].nunique() == 1  # sparsest first: a constant predictor already has 0.5
    prune = df[df["kind"] == "prune"]
    assert set(prune["method_base"]) == set(audit.QUICK_METHODS)
    assert {tuple(w) for w in prune["widths"]} == set(audit.QUICK_WIDTHS)
    assert set(prune["target_nnz"]) == set(audit.QUICK_NNZ)
    assert (prune["epochs"] == 2).all() and (prune["weight_nnz"] == prune["target_nnz"]).all()
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert list(out.rglob("*.png")) and list(out.rglob("*.svg"))
    printed = capsys.readouterr().out
    assert "search" in printed and "gmp" in printed
    n = len(df)
    assert main(argv) == 0  # a rerun trains nothing new
    assert len(load_results([str(out / "runs")])) == n


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
