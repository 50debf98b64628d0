"""The engine's vector width (search.simd, CUBIST_SIMD): what numba compiles for, what rows record."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import search.simd as simd
from search.phases import Grid, search_widths

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVX512 = "+avx512f" in simd._host_features().split(",")

TINY = """
import json, numpy as np
import search, search.simd as s
from search.engine import train_masks
rng = np.random.default_rng(0)
X = rng.standard_normal((512, 2)).astype(np.float32); y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
masks = [np.ones((3, 4, 2), bool), np.ones((3, 4, 4), bool), np.ones((3, 1, 4), bool)]
r = train_masks(X, y, (2, 4, 4, 1), masks, lrs=[0.05, 0.1, 0.2], schedules="cosine", seeds=[0, 1, 2], epochs=3,
                threads=1)
print(json.dumps({"label": s.engine_label(), "off": "-prefer-256-bit" in s.compiled_features().split(","),
                  "w": [float(v) for v in np.concatenate([w.ravel() for w, b in r.weights])]}))
"""


def _run(code, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("CUBIST_SIMD", "NUMBA_CPU_FEATURES")}
    full.update(env, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_choice_sets_the_compiled_width_and_both_widths_train_alike():
    out = {}
    for choice in ("256", "auto"):
        p = _run(TINY, CUBIST_SIMD=choice)
        assert p.returncode == 0, p.stderr
        out[choice] = json.loads(p.stdout.strip().splitlines()[-1])
    cpu = simd.cpu_name()
    assert out["256"]["label"] == f"numba/{cpu}" and not out["256"]["off"]
    assert out["auto"]["label"] == ("numba-avx512" if AVX512 else "numba") + f"/{cpu}"
    assert out["auto"]["off"] == AVX512
    a, b = np.array(out["256"]["w"]), np.array(out["auto"]["w"])
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)  # the same training, up to float32 sum order
    assert np.abs(a).sum() > 0


def test_this_process_records_its_width_in_every_row(tmp_path):
    from cubist.data import Dataset
    from cubist.store import ResultStore
    d = Dataset.spiral()
    tiny = Dataset(d.X[::50], d.y[::50], d.X_heldout[::50], d.y_heldout[::50], d.id + "-every50", d.recipe)
    store = ResultStore(str(tmp_path / "s"))
    search_widths(0.99, Grid(lrs=(0.1,), schedules=("cosine",), seeds=1, epochs=1), store=store, data=tiny,
                  max_width=1, quiet=True, log=lambda *a: None)
    engines = set(store.load()["engine"])
    assert engines == {simd.engine_label()}
    assert simd.engine_label() == ("numba-avx512" if "-prefer-256-bit" in simd.compiled_features().split(",")
                                   else "numba") + "/" + simd.cpu_name()
    import llvmlite.binding as ll
    assert simd.cpu_name() == ll.get_host_cpu_name() and "/" not in simd.cpu_name()


@pytest.mark.parametrize("value, words", [("bogus", "CUBIST_SIMD must be one of auto, 256, 512, got 'bogus'")]
                         + ([] if AVX512 else [("512", "needs a CPU with AVX-512F")]))
def test_a_bad_choice_is_one_line_and_status_2(value, words):
    p = _run("import sys; from cubist.cli import main; sys.exit(main(['search', 'widths', '--target', '0.9']))",
             CUBIST_SIMD=value)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [f"cubist: error: {p.stderr.strip().split('error: ', 1)[1]}"]
    assert words in p.stderr


def test_numbas_own_switch_wins():
    p = _run("import search.simd as s; print(s.engine_label())", CUBIST_SIMD="256",
             NUMBA_CPU_FEATURES=simd._host_features())
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"numba-features/{simd.cpu_name()}"


def test_the_label_names_the_cpu_numba_compiles_for():
    p = _run("import search.simd as s; print(s.engine_label())", CUBIST_SIMD="256", NUMBA_CPU_NAME="generic")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "numba/generic"
