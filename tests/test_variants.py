"""results/variants.py: the one table of method variants the sweep scripts share."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from cubist.cli import build_parser
from cubist.cli.prune import sweep_config_from_args
from cubist.report.tables import method_label
from cubist.store import ResultStore, canonical_json

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("variants", ROOT / "results" / "variants.py")
variants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(variants)


@pytest.mark.parametrize("variant", list(variants.VARIANTS))
def test_each_variant_parses_and_is_reported_under_its_own_name(variant):
    argv = ["prune", *variants.flags(variant).split(), "--widths", "3,3,3", "--nnz", "20", "--out", "x"]
    cfg = sweep_config_from_args(build_parser(argv).parse_args(argv))
    assert method_label(cfg.method, canonical_json(cfg.method_params)) == variant
    iterative = cfg.method in ("imp", "lrr", "imp+pilot", "lrr+pilot")
    assert (cfg.method_params.get("cycles") == 5) == iterative


@pytest.mark.parametrize("variant", list(variants.WORKING_POINTS))
def test_working_points_parse_and_are_reported_under_their_method(variant):
    """A working point is a method with other settings, reported under the method's own name: not in
    the sweeps' "all", so never mixed into a store with the method's default rows."""
    argv = ["prune", *variants.flags(variant).split(), "--widths", "3,3,3", "--nnz", "20", "--out", "x"]
    cfg = sweep_config_from_args(build_parser(argv).parse_args(argv))
    assert method_label(cfg.method, canonical_json(cfg.method_params)) == variant.split("-")[0]
    assert variant not in variants.VARIANTS
    if variant == "pilot-k0.75":
        assert cfg.method_params["pilot_k"] == 0.75

def test_reference_variants_are_those_of_the_committed_sweeps():
    df = ResultStore(ROOT / "results" / "prune").load(["method", "params", "widths"])
    label = [method_label(m, p) for m, p in zip(df["method"], df["params"])]
    assert set(label) == set(variants.VARIANTS) and len(variants.REFERENCE) == 18
    # the added ones (RigL, FORCE, Iter-SNIP, ProsPr) only at width 16: the over-parameterisation
    # matrix's grid source (results/overparam.py), every reference one at every reference width
    added = df[[v in variants.ADDED for v in label]]
    assert {tuple(w) for w in added["widths"]} == {(2, 16, 16, 16, 1)} and len(added) == 4 * 7 * 9 * 3
    assert set(variants.VARIANTS) == set(variants.REFERENCE) | set(variants.ADDED)


def test_scripts_read_the_table():
    for script in ("run_reference.sh", "run_fixed_init.sh", "run_overparam.sh"):
        text = (ROOT / "results" / script).read_text()
        assert "results/variants.py list" in text and "--density-scheme" not in text, script
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "results" / "variants.py"), *a],  # noqa: E731
                                    capture_output=True, text=True)
    assert run("list", "reference").stdout.split() == list(variants.REFERENCE)
    assert run("list", "working").stdout.split() == list(variants.WORKING_POINTS)
    assert run("flags", "imp-wr").stdout.strip() == "--method imp --rewind step --rewind-step 390 --cycles 5"
    bad = run("flags", "bogus")
    assert bad.returncode != 0 and "unknown variant 'bogus'" in bad.stderr


# results/run_reference.sh's sweeps: widths flag, budgets, inits per grid point
REFERENCE_SWEEPS = {"3": (["--widths", "3,3,3"], "15,20,25", 3), "323": (["--widths", "3,2,3"], "15,18,20", 3),
                    "8": (["--width", "8"], "15,20,25,30,40,50,65", 3), "16": (["--width", "16"], "15,20,25,30,40,50,65", 3),
                    "32": (["--width", "32"], "15,20,25,30,40,50,65", 1)}


def test_rerunning_the_committed_reference_sweeps_trains_nothing():
    """Every run the reference sweeps would train today is in results/prune: the run ids and init
    seeds the code derives equal those of the committed rows (an option added with a default, as
    snip/grasp's ``reinit``, renames no run and redraws no init)."""
    from pruners.runner import build_runs, load_data
    store = ResultStore(ROOT / "results" / "prune")
    done = store.done()
    df = store.load(["init_seed"]).set_index("run_id")
    data = None
    for width, (arch, nnz, seeds) in REFERENCE_SWEEPS.items():
        for variant in variants.REFERENCE:
            argv = ["prune", *variants.flags(variant).split(), *arch, "--nnz", nnz, "--lrs", "0.05,0.1,0.2",
                    "--schedules", "cosine,step,constant", "--seeds", str(seeds), "--out", "x"]
            cfg = sweep_config_from_args(build_parser(argv).parse_args(argv))
            if data is None:
                data = load_data(cfg)
            runs = build_runs(cfg, data)
            missing = [r for r in runs if r.run_id not in done]
            assert not missing, (width, variant, len(missing), len(runs))
            assert all(df.loc[r.run_id, "init_seed"] == r.config["init_seed"] for r in runs), (width, variant)
