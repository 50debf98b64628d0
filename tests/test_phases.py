"""Phases 1 and 2 of the search against an independent exhaustive loop (reference trainer)."""
import itertools
import json

import numpy as np
import pandas as pd
import pytest

import cubist
from cubist.masks import mask_key
from cubist.data import Dataset
from search import phases
from search.phases import Grid, search_masks, search_widths

GRID = Grid(lrs=(0.2,), schedules=("constant",), seeds=1, epochs=10)


@pytest.fixture(scope="module")
def tiny():
    d = Dataset.spiral()
    sl = slice(None, None, 20)
    return Dataset(d.X[sl], d.y[sl], d.X_heldout[::40], d.y_heldout[::40], d.id + "-every20", d.recipe)


def eligible(rows, cols):
    for bits in itertools.product([0, 1], repeat=rows * cols):
        m = np.array(bits, bool).reshape(rows, cols)
        if m.any(0).all() and m.any(1).all():
            yield m


def canonical(masks):
    """Smallest byte string over joint permutations of the hidden units (brute force)."""
    hidden = [m.shape[0] for m in masks[:-1]]
    best = None
    for perms in itertools.product(*[itertools.permutations(range(h)) for h in hidden]):
        ms = [m.copy() for m in masks]
        for l, p in enumerate(perms):
            ms[l] = ms[l][list(p), :]
            ms[l + 1] = ms[l + 1][:, list(p)]
        key = b"".join(m.tobytes() for m in ms)
        best = key if best is None or key < best else best
    return best


@pytest.fixture(scope="module")
def brute(tiny):
    """Every labelled eligible mask of 2-2-2-1, trained by the reference trainer, each from its own
    init: the seed a run's identity gives it (widths, mask, lr, schedule, seed index)."""
    out = []
    for w1, w2 in itertools.product(eligible(2, 2), eligible(2, 2)):
        masks = [w1, w2, np.ones((1, 2), bool)]
        init_seed = phases.search_init_seed((2, 2, 2, 1), mask_key(masks), 0.2, "constant", 0)
        model = cubist.MaskedMLP((2, 2, 2, 1), masks, seed=init_seed)
        r = cubist.train_reference(model, tiny.X, tiny.y, cubist.TrainConfig(lr=0.2, schedule="constant",
                                                                           epochs=10, seed=0), device="cpu")
        key = canonical(masks)
        is_rep = key == b"".join(m.tobytes() for m in masks)  # the orbit's smallest member
        out.append((sum(int(m.sum()) for m in masks), key, r.train_acc, r.diverged, is_rep))
    return out


def pick_target(accs, n):
    """A target between two distinct accuracies, away from both (robust to 1e-4 weight noise)."""
    vals = sorted(set(accs))
    gaps = [(b - a, (a + b) / 2) for a, b in zip(vals, vals[1:]) if b - a > 2.5 / n]
    assert gaps, "no usable gap"
    # the widest gap in the upper half of the accuracies: some masks reach it, some do not
    upper = [g for g in gaps if g[1] >= np.median(vals)] or gaps
    return max(upper)[1]


def test_phase2_matches_exhaustive_loop(tiny, brute, tmp_path):
    """Every mask from its own init: the labelled search must match all labelled masks, the orbit
    search the orbit representatives (smallest member), each trained by the reference trainer."""
    for symmetry, pool in (("labelled", brute), ("orbits", [b for b in brute if b[4]])):
        target = pick_target([b[2] for b in pool], len(tiny.X))
        reach = [(nnz, key) for nnz, key, acc, div, _ in pool if acc >= target and not div]
        sparsest = min(n for n, _ in reach)
        store = cubist.ResultStore(tmp_path / symmetry)
        res = search_masks((2, 2), target, GRID, store=store, data=tiny, symmetry=symmetry, quiet=True,
                           log=lambda *a: None)
        assert res.sparsest_nnz == sparsest, symmetry
        assert res.masks_at_sparsest == sum(1 for n, _ in reach if n == sparsest), symmetry
        # sparsest-first: no level above the sparsest was trained, every level below was
        assert max(res.levels) == sparsest
        trained = sum(1 for b in pool if b[0] <= sparsest)
        df = store.load()
        assert len(df) == trained and df["weight_nnz"].max() == sparsest
        assert (df["kind"] == "search_masks").all()


def test_fixed_levels_go_out_at_once_and_match_the_exhaustive_loop(tiny, brute, tmp_path, monkeypatch):
    """--exhaustive / --max-nnz in one round: every level's chunks go out in one dispatch (no level
    waits for the one before), yet each level reports what the reference loop gives for it."""
    pool = [b for b in brute if b[4]]
    target = pick_target([b[2] for b in pool], len(tiny.X))
    calls = []
    real = phases.run_chunks

    def recording(chunks, *a, **k):
        chunks = list(chunks)
        calls.append(sorted({int(sum(m.sum() for m in (layer[i] for layer in c.masks)))
                             for c in chunks for i in range(len(c.configs))}))
        return real(chunks, *a, **k)

    monkeypatch.setattr(phases, "run_chunks", recording)
    res = search_masks((2, 2), target, GRID, store=cubist.ResultStore(tmp_path / "x"), data=tiny, exhaustive=True,
                       chunk_size=4, jobs=2, quiet=True, log=lambda *a: None)
    levels = sorted({b[0] for b in pool})
    assert calls == [levels]                      # one dispatch holding every level
    for nnz in levels:
        at = [b for b in pool if b[0] == nnz]
        assert res.levels[nnz].runs == len(at)
        assert res.levels[nnz].masks_reaching == sum(1 for b in at if b[2] >= target and not b[3])
    reach = [b[0] for b in pool if b[2] >= target and not b[3]]
    assert res.sparsest_nnz == min(reach) and res.trained == len(pool)
    again = search_masks((2, 2), target, GRID, store=cubist.ResultStore(tmp_path / "x"), data=tiny,
                         exhaustive=True, quiet=True, log=lambda *a: None)
    assert again.trained == 0 and {n: s.masks_reaching for n, s in again.levels.items()} == \
        {n: s.masks_reaching for n, s in res.levels.items()}


def test_phase2_exhaustive_and_resume_after_kill(tiny, tmp_path, monkeypatch):
    store = cubist.ResultStore(tmp_path / "s")
    real = phases.train_chunk
    finished = []

    def dies_after_two(chunk, *a, **k):
        if len(finished) == 2:
            raise KeyboardInterrupt  # the sweep is killed after two chunks
        rows = real(chunk, *a, **k)
        finished.append(len(rows))
        return rows

    monkeypatch.setattr(phases, "train_chunk", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        search_masks((2, 2), 0.99, GRID, store=store, data=tiny, exhaustive=True, chunk_size=3, quiet=True,
                     log=lambda *a: None)
    stored = len(store.load())
    assert stored == sum(finished) > 0
    monkeypatch.setattr(phases, "train_chunk", real)
    res = search_masks((2, 2), 0.99, GRID, store=store, data=tiny, exhaustive=True, chunk_size=3, quiet=True,
                       log=lambda *a: None)
    from search.enumerate import count_masks
    total = sum(count_masks((2, 2, 2, 1)).values())
    assert res.trained == total - stored
    df = store.load()
    assert len(df) == total and len(store.done()) == total
    assert len(cubist.ResultStore(store.path).table(["run_id"])) == total  # nothing trained twice
    again = search_masks((2, 2), 0.99, GRID, store=store, data=tiny, exhaustive=True, quiet=True,
                         log=lambda *a: None)
    assert again.trained == 0


def test_phase1_widths(tiny, tmp_path):
    store = cubist.ResultStore(tmp_path / "w")
    res = search_widths(0.0, GRID, store=store, data=tiny, max_width=2, depth=2, quiet=True, log=lambda *a: None)
    assert res.trained == 4 and len(store.load()) == 4
    assert set(res.reaching) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert res.by_weights == [(1, 1)] and res.by_units == [(1, 1)] and res.pareto == [(1, 1)]
    # dense rows equal the reference trainer on the same init and data order
    df = store.load()
    r = df[df["widths"].apply(lambda w: list(w) == [2, 2, 2, 1])].iloc[0]
    assert r["init"] == "random" and r["init_seed"] == phases.search_init_seed(
        (2, 2, 2, 1), mask_key([np.ones((2, 2), bool), np.ones((2, 2), bool), np.ones((1, 2), bool)]),
        0.2, "constant", 0)
    model = cubist.MaskedMLP((2, 2, 2, 1), seed=int(r["init_seed"]))
    ref = cubist.train_reference(model, tiny.X, tiny.y, cubist.TrainConfig(lr=0.2, schedule="constant", epochs=10),
                                 device="cpu")
    assert abs(r["train_acc"] - ref.train_acc) <= 2 / len(tiny.X)
    assert df["init_seed"].nunique() == len(df)  # every architecture its own init
    # a target above every run: nothing reaches it, and nothing is retrained
    none = search_widths(df["train_acc"].max() + 1e-9, GRID, store=store, data=tiny, max_width=2, depth=2,
                         quiet=True, log=lambda *a: None)
    assert none.trained == 0 and none.reaching == [] and none.by_weights == []


def test_phase2_fixed_init_is_labelled_and_matches_reference(tiny, tmp_path):
    from search.phases import FixedInit, save_init
    path = str(tmp_path / "init.pt")
    save_init(path, widths=(2, 16, 16, 1), seed=5)
    init = FixedInit.load(path)
    with pytest.raises(ValueError, match="layers"):
        init.sliced((2, 2, 2, 2, 1))
    with pytest.raises(ValueError, match="labelled"):
        search_masks((2, 2), 0.99, GRID, store=cubist.ResultStore(tmp_path / "x"), data=tiny, init=init,
                     quiet=True, log=lambda *a: None)
    store = cubist.ResultStore(tmp_path / "fixed")
    res = search_masks((2, 2), 0.99, GRID, store=store, data=tiny, init=init, symmetry="labelled",
                       max_nnz=7, quiet=True, log=lambda *a: None)
    df = store.load()
    assert res.trained == len(df) > 0 and df["init_width"].isna().all() and df["init_seed"].isna().all()
    assert set(df["init"]) == {f"checkpoint:{init.id}"}
    row = df.iloc[0]
    masks = cubist.row_masks(row)
    model = cubist.MaskedMLP((2, 2, 2, 1), masks, params=init.sliced((2, 2, 2, 1)))
    ref = cubist.train_reference(model, tiny.X, tiny.y, cubist.TrainConfig(lr=0.2, schedule="constant", epochs=10),
                                 device="cpu")
    assert abs(row["train_acc"] - ref.train_acc) <= 2 / len(tiny.X)
    for (w, b), lin in zip(cubist.row_weights(row), model.layers):
        np.testing.assert_allclose(w, lin.weight.detach().numpy(), atol=1e-5)


def test_chunks_train_the_recorded_learning_rate():
    # The engine must train exactly the lr a row records: a float32 copy of 0.1 is another
    # learning rate, and 50 epochs of a tiny sparse net can end far apart from one ulp of it.
    widths = (2, 1, 1, 1, 1)
    masks = [np.ones((widths[l + 1], widths[l]), bool) for l in range(4)]
    models = [(masks, lr, "cosine", 0, {"lr": lr}) for lr in (0.1, 0.05, 0.2, 0.3)]
    (chunk,) = phases._chunked(models, widths, 16)
    assert [float(v) for v in chunk.lrs] == [c["lr"] for c in chunk.configs]


def test_retrain_from_init_matches_reference_and_search_rows(tiny, tmp_path):
    # A stored search row is reproduced exactly by retraining its mask, and the retraining is the
    # reference trainer's run with the same mask, lr, schedule and seed (init and data order).
    grid = Grid(lrs=(0.1,), schedules=("cosine",), seeds=2, epochs=3)
    store = cubist.ResultStore(tmp_path / "s")
    search_masks((2, 1, 2), 0.99, grid, store=store, data=tiny, exhaustive=True, quiet=True, log=lambda *a: None)
    rows = store.load()
    assert len(rows) > 4
    for _, row in rows.head(4).iterrows():
        masks = cubist.row_masks(row)
        res = phases.retrain_from_init(tuple(row["widths"]), masks, grid, data=tiny)
        mine = res[(res["seed"] == row["seed"])].iloc[0]
        assert mine["train_acc"] == row["train_acc"] and mine["final_loss"] == row["final_loss"]
    widths = tuple(rows.iloc[0]["widths"])
    masks = cubist.row_masks(rows.iloc[0])
    res = phases.retrain_from_init(widths, masks, grid, data=tiny)
    assert list(res.columns) == ["lr", "schedule", "seed", "init_seed", "train_acc", "heldout_acc", "final_loss",
                                 "diverged"]
    assert list(res["seed"]) == [0, 1] and res["init_seed"].nunique() == 2
    for seed in (0, 1):
        init_seed = int(res.loc[res["seed"] == seed, "init_seed"].iloc[0])
        model = cubist.MaskedMLP(widths, masks, init_width=16, seed=init_seed)
        ref = cubist.train_reference(model, tiny.X, tiny.y, cubist.TrainConfig(lr=0.1, schedule="cosine", epochs=3,
                                                                               seed=seed), device="cpu")
        got = res[res["seed"] == seed].iloc[0]
        assert got["final_loss"] == pytest.approx(ref.final_loss, abs=1e-5)
        assert got["train_acc"] == pytest.approx(ref.train_acc, abs=2e-3)


def test_every_run_its_own_init_whatever_the_chunking(tiny, tmp_path):
    """Two masks (and two seed indices) never share an init; the same run gets the same init, and
    the same row, whatever chunk size or job count trains it; a row's init seed redraws its init."""
    grid = Grid(lrs=(0.1, 0.2), schedules=("constant",), seeds=2, epochs=2)
    kw = dict(data=tiny, exhaustive=True, quiet=True, log=lambda *a: None)
    a = cubist.ResultStore(tmp_path / "a")
    b = cubist.ResultStore(tmp_path / "b")
    search_masks((2, 1, 2), 0.99, grid, store=a, chunk_size=512, **kw)
    search_masks((2, 1, 2), 0.99, grid, store=b, chunk_size=3, jobs=2, **kw)
    da, db = (s.load().set_index("run_id").sort_index() for s in (a, b))
    assert list(da.index) == list(db.index) and len(da) > 8
    assert da["init_seed"].nunique() == len(da)  # masks, grid points and seed indices: all distinct
    for col in ("init_seed", "train_acc", "final_loss", "weights"):
        assert list(da[col]) == list(db[col]), col
    # the recorded seed redraws the init: the reference trainer from it gives the row
    row = da.iloc[0]
    model = cubist.MaskedMLP(tuple(row["widths"]), cubist.row_masks(row), seed=int(row["init_seed"]))
    ref = cubist.train_reference(model, tiny.X, tiny.y, cubist.TrainConfig(lr=row["lr"], schedule="constant",
                                                                           epochs=2, seed=int(row["seed"])),
                                 device="cpu")
    assert ref.final_loss == pytest.approx(row["final_loss"], abs=1e-5)


def test_mask_rates_from_handmade_records():
    recs = []
    for k in range(10):  # mask a: 3 of 10 at (0.1, cosine), 1 of 10 at (0.05, step); mask b: 0 of 4
        recs.append(dict(mask="a", weight_nnz=7, lr=0.1, schedule="cosine", train_acc=0.96 if k < 3 else 0.5,
                         diverged=False))
        recs.append(dict(mask="a", weight_nnz=7, lr=0.05, schedule="step", train_acc=0.97 if k == 0 else 0.9,
                         diverged=False))
    recs += [dict(mask="b", weight_nnz=7, lr=0.1, schedule="cosine", train_acc=0.99, diverged=True)] * 4
    rates = phases.mask_rates(recs, 0.95)
    a, b = rates["a"], rates["b"]
    assert (a.runs, a.successes, a.best_runs, a.best_successes) == (20, 4, 10, 3)
    assert (a.best_lr, a.best_schedule, a.rate, a.best_acc) == (0.1, "cosine", 0.3, 0.97)
    assert a.interval == cubist.wilson_interval(3, 10)
    assert (b.runs, b.successes, b.rate) == (4, 0, 0.0) and b.best_acc == -np.inf


def test_adaptive_seeds_find_what_the_uniform_design_finds(tiny, tmp_path):
    """Adaptive rounds train a subset of the uniform design's runs (the same runs, same inits), and
    find the same sparsest level; rows record their round."""
    grid = Grid(lrs=(0.2,), schedules=("constant",), seeds=4, epochs=4)
    kw = dict(data=tiny, quiet=True, log=lambda *a: None)
    uni_store = cubist.ResultStore(tmp_path / "u")
    search_masks((2, 2), 1.0, grid, store=uni_store, exhaustive=True, **kw)
    acc = uni_store.load()["train_acc"]
    target = float(np.quantile(acc, 0.97))  # a few runs reach it, most do not
    uni = search_masks((2, 2), target, grid, store=uni_store, exhaustive=True, **kw)
    assert uni.trained == 0 and uni.sparsest_nnz is not None and uni.inits == 4
    assert uni.sparsest_nnz > min(uni.levels)  # the sparsest levels do not reach it: a real search
    ada_store = cubist.ResultStore(tmp_path / "a")
    ada = search_masks((2, 2), target, grid, store=ada_store, adaptive=phases.Adaptive((1, 4), 0.5),
                       exhaustive=True, **kw)
    assert ada.sparsest_nnz == uni.sparsest_nnz
    du, da = uni_store.load().set_index("run_id"), ada_store.load().set_index("run_id")
    assert set(da.index) < set(du.index)  # a strict subset of the same runs
    assert (da["train_acc"] == du.loc[da.index, "train_acc"]).all()
    rounds = [json.loads(m)["round"] for m in da["metrics"]]
    assert set(rounds) == {0, 1}
    # round 1 trains the better half of each level (ceil), 3 more inits per grid point each
    for nnz, lv in ada.levels.items():
        assert lv.runs == lv.masks * 1 + max(1, -(-lv.masks // 2)) * 3
    with pytest.raises(ValueError, match="agree"):
        search_masks((2, 2), target, Grid(lrs=(0.2,), schedules=("constant",), seeds=3, epochs=4),
                     store=ada_store, adaptive=phases.Adaptive((1, 4), 0.5), **kw)


def test_min_rate_searches_on_until_a_mask_is_reliable(tiny, tmp_path):
    grid = Grid(lrs=(0.2,), schedules=("constant",), seeds=4, epochs=4)
    store = cubist.ResultStore(tmp_path / "r")
    kw = dict(data=tiny, exhaustive=True, quiet=True, log=lambda *a: None)
    search_masks((2, 2), 1.0, grid, store=store, **kw)
    df = store.load()
    target = float(np.quantile(df["train_acc"], 0.9))
    res = search_masks((2, 2), target, grid, store=store, min_rate=0.5, **kw)
    # independent recount from the stored rows
    df["mask"] = [json.loads(p)["mask"] for p in df["params"]]
    df["ok"] = (df["train_acc"] >= target) & ~df["diverged"]
    per_mask = df.groupby(["weight_nnz", "mask"])["ok"].mean()
    want_any = int(df.loc[df["ok"], "weight_nnz"].min())
    good = per_mask[per_mask >= 0.5]
    assert res.sparsest_nnz == want_any
    assert res.rate_nnz == (int(good.index.get_level_values(0).min()) if len(good) else None)
    assert res.rate_nnz is None or res.rate_nnz >= res.sparsest_nnz
    assert "inits per mask" in res.summary()


# -- in-process chunks, the engine's preparation, chunks planned whatever is stored ----------------
SIGNATURES = """
import json, sys
import numpy as np
from cubist.data import Dataset
from search import engine, phases
from search.enumerate import enumerate_masks
in_process, epochs, seeds = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3])
d = Dataset.spiral()
data = Dataset(d.X[::10], d.y[::10], d.X_heldout[::10], d.y_heldout[::10], d.id + "-every10", d.recipe)
grid = phases.Grid(lrs=(0.05, 0.1), schedules=("cosine",), seeds=seeds, epochs=epochs)
widths = (2, 3, 3, 1)
models = []
for masks in list(enumerate_masks(widths, symmetry="orbits"))[:5]:
    key = phases.mask_key(masks)
    for lr, sch, k in grid.points():
        models.append((masks, lr, sch, k, phases._row_config("search_masks", widths, lr, sch, k, grid, data, None,
                                                             "orbits", key)))
chunk = next(phases._chunked(models, widths, 512))
def signatures():
    return {name: [str(s) for s in f.signatures] for name, f in vars(engine).items() if hasattr(f, "signatures")}
phases.prepare_engine(chunk, data, grid, in_process=in_process)
prepared = signatures()
phases.train_chunk(chunk, data, grid, None, threads=None if in_process else 1,
                   on_epochs=(lambda done, total: None) if in_process else None)
print(json.dumps({"prepared": prepared, "trained": signatures(), "models": len(chunk.configs)}))
"""


@pytest.mark.parametrize("in_process, epochs, seeds", [(True, 12, 1), (False, 12, 1), (True, 4, 3), (False, 30, 2)])
def test_prepare_engine_compiles_what_the_chunks_then_use(in_process, epochs, seeds):
    """numba compiles the engine once per argument layout, which depends on models and seeds per
    call, epochs and epoch reports: after the preparation, training the chunk itself (in a fresh
    process) loads or compiles nothing more."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", SIGNATURES, str(int(in_process)), str(epochs), str(seeds)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["models"] == 5 * 2 * seeds
    assert got["prepared"]["_train_epochs"], "the preparation trained nothing"
    assert got["trained"] == got["prepared"]


def test_prepare_engine_says_what_it_does_once_it_takes_noticeable_time(tiny, monkeypatch):
    chunk, _ = _one_chunk(tiny)
    lines = []
    monkeypatch.setattr(phases, "_prepared", set())
    monkeypatch.setattr(phases, "ENGINE_NOTICE_S", 60.0)      # quick: no word
    assert phases.prepare_engine(chunk, tiny, GRID, note=lines.append) >= 0 and lines == []
    assert phases.prepare_engine(chunk, tiny, GRID, note=lines.append) is None   # prepared once per process
    monkeypatch.setattr(phases, "_prepared", set())
    monkeypatch.setattr(phases, "ENGINE_NOTICE_S", 0.0)       # slow: a line before, the seconds after
    took = phases.prepare_engine(chunk, tiny, GRID, note=lines.append)
    assert len(lines) == 2 and lines[0].startswith("preparing the search engine (numba compiles it on first use")
    assert lines[1].startswith(f"search engine ready in {took:.1f} s (")
    assert lines[1].endswith("(loaded from the cache)") or lines[1].endswith("(compiled, and cached for later runs)")


def _one_chunk(data, grid=GRID, widths=(2, 2, 2, 1), n=6):
    from search.enumerate import enumerate_masks
    models = []
    for masks in list(enumerate_masks(widths, symmetry="orbits"))[:n]:
        for lr, sch, k in grid.points():
            cfg = phases._row_config("search_masks", widths, lr, sch, k, grid, data, None, "orbits", mask_key(masks))
            models.append((masks, lr, sch, k, cfg))
    return next(phases._chunked(models, widths, 512)), models


def test_epoch_reports_leave_the_rows_unchanged(tiny):
    """A chunk trained in the driver reports epochs (every <= 10, where a stop signal is handled);
    its rows are those of the same chunk trained without reports, early exits included."""
    grid = Grid(lrs=(0.05, 0.2), schedules=("cosine", "constant"), seeds=2, epochs=23)
    chunk, _ = _one_chunk(tiny, grid, (2, 3, 3, 1), n=8)
    reports = []
    with_reports = phases.train_chunk(chunk, tiny, grid, None, threads=None,
                                      on_epochs=lambda done, total: reports.append((done, total)))
    without = phases.train_chunk(chunk, tiny, grid, None, threads=None)
    assert reports[-1] == (23, 23) and len(reports) == 3
    drop = ("wall_time_s", "created_at")
    assert [{k: v for k, v in r.items() if k not in drop} for r in with_reports] == \
        [{k: v for k, v in r.items() if k not in drop} for r in without]


def test_run_chunks_trains_only_what_is_missing_of_its_planned_chunks(tiny, tmp_path, monkeypatch):
    """Chunks are planned from every run (two sweeps then cut the same chunks, claimed by the same
    keys): run_chunks trains a chunk's missing runs only and skips a stored chunk, and the search
    reads back the runs another writer stored meanwhile."""
    store = cubist.ResultStore(tmp_path / "s")
    _, models = _one_chunk(tiny, n=6)
    chunks = list(phases._chunked(models, (2, 2, 2, 1), 2))
    assert len(chunks) == 3
    first = phases.train_chunk(chunks[0], tiny, GRID, None, threads=None)
    store.write(first + phases.train_chunk(chunks[1].subset([1]), tiny, GRID, None, threads=None))
    trained = []
    real = phases.train_chunk

    def counting(chunk, *a, **k):
        trained.append([c["init_seed"] for c in chunk.configs])
        return real(chunk, *a, **k)

    monkeypatch.setattr(phases, "train_chunk", counting)
    rows = phases.run_chunks(chunks, store, tiny, GRID)
    seeds = lambda c: [cfg["init_seed"] for cfg in c.configs]   # noqa: E731
    assert trained == [seeds(chunks[1])[:1], seeds(chunks[2])]           # chunk 0 skipped, chunk 1 in part
    assert len(rows) == 3 and len(store.done()) == 6 == len(store.table(["run_id"]))
    assert not list((tmp_path / "s" / "_claims").iterdir())


def test_search_reads_back_the_runs_another_sweep_stored(tiny, tmp_path, monkeypatch):
    """Runs missing when a level was planned but stored by another writer before this sweep got to
    them are not trained again, and they count in the level like the sweep's own."""
    full = search_masks((2, 2), 0.99, GRID, store=cubist.ResultStore(tmp_path / "a"), data=tiny, exhaustive=True,
                        quiet=True, log=lambda *a: None)
    rows = cubist.ResultStore(tmp_path / "a").table().to_pylist()
    store = cubist.ResultStore(tmp_path / "b")
    real = phases.run_chunks

    def another_sweep_first(chunks, store, *a, **k):   # each level's first run lands just before
        ids = {cubist.run_id(c) for chunk in chunks for c in chunk.configs}
        first = {}
        for r in rows:
            if r["run_id"] in ids:
                first.setdefault(r["weight_nnz"], r)
        store.write(list(first.values()))
        return real(chunks, store, *a, **k)

    monkeypatch.setattr(phases, "run_chunks", another_sweep_first)
    res = search_masks((2, 2), 0.99, GRID, store=store, data=tiny, exhaustive=True, quiet=True, log=lambda *a: None)
    assert res.trained == full.trained - len(res.levels)               # one run per level came from elsewhere
    assert {n: v.runs for n, v in res.levels.items()} == {n: v.runs for n, v in full.levels.items()}
    assert len(store.done()) == full.trained == len(store.table(["run_id"]))


def test_retrain_from_init_stores_rows_that_are_the_searchs_but_of_their_own_kind(tiny, tmp_path):
    """With a store, retraining keeps each run as a row of kind search_retrain: the same values as
    without a store and as the search's own row of that mask and grid point (same init), a
    configuration that differs from the search's only in kind, and nothing trained twice."""
    grid = Grid(lrs=(0.1,), schedules=("cosine",), seeds=2, epochs=3)
    search_store = cubist.ResultStore(tmp_path / "s")
    search_masks((2, 1, 2), 0.99, grid, store=search_store, data=tiny, exhaustive=True, quiet=True,
                 log=lambda *a: None)
    srow = search_store.load().sort_values("run_id").iloc[0]
    widths, masks = tuple(int(w) for w in srow["widths"]), cubist.row_masks(srow)
    plain = phases.retrain_from_init(widths, masks, grid, data=tiny)
    store = cubist.ResultStore(tmp_path / "r")
    kept = phases.retrain_from_init(widths, masks, grid, data=tiny, store=store)
    pd.testing.assert_frame_equal(kept, plain)
    rows = store.load().sort_values("seed").reset_index(drop=True)
    assert len(rows) == 2 and set(rows["kind"]) == {"search_retrain"} and set(rows["method"]) == {"retrain"}
    from cubist.report.tables import RETRAIN_KIND
    assert RETRAIN_KIND == phases.RETRAIN_KIND == "search_retrain"
    mine = rows[rows["seed"] == srow["seed"]].iloc[0]
    for col in ("train_acc", "final_loss", "heldout_acc", "init_seed", "weights", "mask_bits", "metrics", "engine"):
        assert mine[col] == srow[col] or (pd.isna(mine[col]) and pd.isna(srow[col])), col
    a, b = json.loads(mine["config"]), json.loads(srow["config"])
    assert a.pop("kind") == "search_retrain" and b.pop("kind") == "search_masks"
    assert a.pop("method") == "retrain" and b.pop("method") == "mask"
    assert a.pop("params") == {"mask": b["params"]["mask"], "symmetry": "labelled"} and b.pop("params")
    assert a == b and mine["run_id"] != srow["run_id"]
    assert phases.SearchRun.from_row(mine).train(tiny)["train_acc"] == mine["train_acc"]   # the row redraws
    # again: nothing new is trained, the stored values come back
    calls = []
    real = phases.run_chunks
    try:
        phases.run_chunks = lambda chunks, *a, **k: calls.append(real(chunks, *a, **k)) or calls[-1]
        again = phases.retrain_from_init(widths, masks, grid, data=tiny, store=store)
    finally:
        phases.run_chunks = real
    assert calls == [[]] and len(store.load()) == 2
    pd.testing.assert_frame_equal(again, plain)
