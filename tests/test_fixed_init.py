"""The fixed-init experiments (issue 12, item 3): ``cubist search best-init`` saves the width-16
init behind the best phase-1 run and that run comes back from it; pruners and the search start
every run from the slices of one checkpoint, repeat over the data order, record the checkpoint
id and resume; orbits are refused with a fixed init; default rows keep their ids."""
import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

import cubist
from cubist.checkpoint import FixedInit, save_init
from cubist.cli import main
from cubist.data import Dataset
from cubist.store import ResultStore, run_id
from pruners.runner import Run, SweepConfig, build_runs, initial_model, load_data, rerun, run_chunk, run_sweep
from search.phases import (Grid, SearchRun, best_init, best_phase1_run, dense_param_count, phase1_architectures,
                           search_masks, search_widths)

from handmade import W3, W16, full_mask, row as handmade_row

QUIET = dict(quiet=True, log=lambda *a: None)


@pytest.fixture(scope="module")
def tiny():
    d = Dataset.spiral()
    return Dataset(d.X[::25], d.y[::25], d.X_heldout[::50], d.y_heldout[::50], d.id + "-every25", d.recipe)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ckpt") / "init16.pt")
    save_init(path, W16, seed=11)
    return path


# -- best-init ---------------------------------------------------------------------------------
def _phase1(acc, seed, *, loss=0.1, widths=W3, init="random", init_seed=None, diverged=False, kind="search_widths"):
    r = handmade_row(kind, "dense", widths, full_mask(widths), acc, seed=seed, diverged=diverged, init=init,
                     init_seed=init_seed if init_seed is not None or init != "random" else 1000 + seed)
    r["final_loss"] = loss
    return r


def test_best_init_picks_the_best_run_by_the_documented_rule(tmp_path):
    rows = [
        _phase1(0.960, 0, loss=0.20),
        _phase1(0.960, 1, loss=0.10),                                        # tie on accuracy: lower loss wins
        _phase1(0.990, 2, diverged=True),                                    # diverged: never
        _phase1(0.999, 3, widths=(2, 3, 3, 2, 1)),                           # another architecture
        _phase1(0.999, 4, init="checkpoint:abcd", init_seed=None),           # a fixed init has no seed to redraw
        _phase1(0.999, 5, kind="search_masks"),                              # phase 2
        _phase1(0.950, 6),
    ]
    assert best_phase1_run(rows, (3, 3, 3))["run_id"] == rows[1]["run_id"]
    twins = [_phase1(0.97, 7, loss=0.1), _phase1(0.97, 8, loss=0.1)]     # tied on both: the smaller run id
    assert best_phase1_run(rows + twins, (3, 3, 3))["run_id"] == min(r["run_id"] for r in twins)
    assert best_phase1_run(rows, (4, 4, 4)) is None

    store = ResultStore(str(tmp_path / "S"))
    store.write(rows)   # hand-made rows cannot be retrained: no check, the init is redrawn from the seed
    out = str(tmp_path / "best.pt")
    res = best_init(store, (3, 3, 3), out, check=False, log=lambda *a: None)
    init = FixedInit.load(out)
    assert res.row["run_id"] == rows[1]["run_id"] and init.id == res.init.id
    assert init.source["run_id"] == rows[1]["run_id"] and init.source["init_seed"] == 1001
    ref = cubist.init_weights(W16, 16, 1001)
    assert init.widths == W16
    for (w, b), (rw, rb) in zip(init.weights, ref):
        assert np.array_equal(w, rw.numpy()) and np.array_equal(b, rb.numpy())
    with pytest.raises(ValueError, match="below the target"):
        best_init(store, (3, 3, 3), str(tmp_path / "no.pt"), target=0.97, check=False, log=lambda *a: None)


def test_best_init_checkpoint_reproduces_the_row(tmp_path, capsys):
    """On real phase-1 runs: the saved init is the run's width-16 init, best-init's check passes,
    and a fixed-init phase 1 from it trains that very run again (same accuracies, same weights)."""
    data = Dataset.spiral()
    grid = Grid(lrs=(0.1,), schedules=("cosine",), seeds=2, epochs=1)
    src = ResultStore(str(tmp_path / "S"))
    search_widths(0.99, grid, store=src, data=data, min_width=3, max_width=3, **QUIET)
    rows = src.load()
    best = best_phase1_run(rows, (3, 3, 3))
    out = str(tmp_path / "init.pt")
    assert main(["search", "best-init", "--store", src.path, "--widths", "3,3,3", "--out", out]) == 0
    assert "identical row" in capsys.readouterr().out
    init = FixedInit.load(out)
    assert init.source["run_id"] == best["run_id"] and init.source["store"] == src.path
    for (w, b), (rw, rb) in zip(init.sliced(W3), cubist.init_weights(W3, 16, int(best["init_seed"]))):
        assert np.array_equal(w, rw.numpy()) and np.array_equal(b, rb.numpy())

    fixed = ResultStore(str(tmp_path / "F"))
    search_widths(0.99, grid, store=fixed, data=data, min_width=3, max_width=3, init=init, **QUIET)
    again = fixed.load().set_index("seed").loc[int(best["seed"])]
    assert again["init"] == f"checkpoint:{init.id}" and again["run_id"] == init.source["reproduced_by"]
    for col in ("train_acc", "heldout_acc", "final_loss"):
        assert again[col] == best[col], col
    assert again["weights"] == rows.set_index("run_id").loc[best["run_id"], "weights"]


@pytest.mark.parametrize("factor,acc_shift,w_factor,exact_ok,close_ok", [
    (1.0, 0.0, 1.0, True, True),             # the row itself
    (1 + 1e-6, 0.0, 1.0, False, True),       # last bits apart, as the same run on another CPU model
    (1 + 1e-3, 0.01, 1.003, False, True),    # and one point of accuracy, weights 0.3% apart
    (1.1, 0.0, 1.0, False, False),           # a loss 10% apart: another run
    (1.0, 0.05, 1.0, False, False),          # five points of accuracy apart
    (1.0, 0.0, 1.1, False, False),           # weights 10% apart
])
def test_best_init_check_exact_and_close(tmp_path, capsys, factor, acc_shift, w_factor, exact_ok, close_ok):
    """--check exact requires the row bit for bit, --check close within CLOSE_ACC and CLOSE_LOSS;
    the stored row is altered by hand to stand for a row made on another CPU model (or not the
    run's row at all); --no-check saves without retraining."""
    grid = Grid(lrs=(0.1,), schedules=("cosine",), seeds=1, epochs=1)
    src = ResultStore(str(tmp_path / "S"))
    search_widths(0.99, grid, store=src, data=Dataset.spiral(), min_width=3, max_width=3, **QUIET)
    rows = src.table().to_pylist()
    for r in rows:
        r["final_loss"] *= factor
        r["weights"] = (np.frombuffer(r["weights"], dtype=np.float32) * np.float32(w_factor)).tobytes()
        r["train_acc"] = r["train_acc"] - acc_shift if r["train_acc"] >= 0.5 else r["train_acc"] + acc_shift
    altered = ResultStore(str(tmp_path / "A"))
    altered.write(rows)
    base = ["search", "best-init", "--store", altered.path, "--widths", "3,3,3"]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "e.pt")]) == (0 if exact_ok else 1)
    out, err = capsys.readouterr()
    assert ("identical row" in out) if exact_ok else ("not saved" in err and not (tmp_path / "e.pt").exists())
    assert main([*base, "--check", "close", "--out", str(tmp_path / "c.pt")]) == (0 if close_ok else 1)
    out, err = capsys.readouterr()
    if close_ok:
        assert "retrained from the checkpoint: close" in out or "identical" in out
        assert FixedInit.load(str(tmp_path / "c.pt")).source["check"] == "close"
    else:
        assert "apart" in err and "not saved" in err and not (tmp_path / "c.pt").exists()
    assert main([*base, "--no-check", "--out", str(tmp_path / "n.pt")]) == 0
    assert FixedInit.load(str(tmp_path / "n.pt")).source["check"] == "off"


# -- pruners from a checkpoint -----------------------------------------------------------------
def _cfg(ckpt, **kw):
    base = dict(method="gmp", widths=W3, nnz=(15,), lrs=(0.1,), schedules=("cosine",), seeds=2, epochs=1,
                subsample=40, init_checkpoint=ckpt)
    return SweepConfig(**{**base, **kw})


@pytest.mark.parametrize("engine", ["batched", "single"])
def test_pruner_runs_start_from_the_checkpoint_slice(ckpt, engine, one_thread):
    cfg = _cfg(ckpt, engine=engine)
    sliced = FixedInit.load(ckpt).sliced(W3)
    runs = build_runs(cfg, load_data(cfg))
    for run in runs:
        model = initial_model(cfg, [run])
        if engine == "single":
            got = [(l.weight.detach().numpy()[None], l.bias.detach().numpy()[None])
                   for l in model if isinstance(l, torch.nn.Linear)]
        else:
            got = [(l.weight.detach().numpy(), l.bias.detach().numpy()) for l in model.layers]
        for (w, b), (sw, sb) in zip(got, sliced):
            assert np.array_equal(w[0], sw) and np.array_equal(b[0], sb)
    batched = initial_model(_cfg(ckpt), runs)   # both replicas of one chunk: the same init
    assert np.array_equal(batched.layers[0].weight[0].detach().numpy(), sliced[0][0])
    assert np.array_equal(batched.layers[0].weight[1].detach().numpy(), sliced[0][0])


def test_two_seed_indices_share_the_init_not_the_data_order(ckpt, one_thread):
    cfg = _cfg(ckpt)
    data = load_data(cfg)
    runs = build_runs(cfg, data)
    assert [r.seed for r in runs] == [0, 1]
    rows = [run_chunk(cfg, [r], data, torch.device("cpu"))[0] for r in runs]
    ident = FixedInit.load(ckpt).id
    for row in rows:   # the checkpoint id instead of an init seed
        assert row["init"] == f"checkpoint:{ident}" and row["init_seed"] is None and row["init_width"] is None
    assert rows[0]["weights"] != rows[1]["weights"]   # same init, other batches: other weights
    perm = [cubist.epoch_permutation(r.seed, 0, len(data.X)) for r in runs]
    assert not np.array_equal(perm[0], perm[1])
    assert len({r.rng_seed for r in runs}) == 2       # the method's own randomness differs per run too


def test_a_checkpoint_run_is_the_random_run_it_was_cut_from(tmp_path, one_thread):
    """A random-init run, and the same run from a checkpoint of its own width-16 init, train the
    same weights bit for bit: the fixed init is the same slicing rule, only the init differs."""
    cfg = SweepConfig(method="gmp", widths=W3, nnz=(15,), lrs=(0.1,), schedules=("cosine",), seeds=1, epochs=1,
                      subsample=40)
    data = load_data(cfg)
    (run,) = build_runs(cfg, data)
    path = str(tmp_path / "own.pt")
    save_init(path, W16, seed=run.init_seed)
    fixed = dataclasses.replace(cfg, init_checkpoint=path)
    (frun,) = build_runs(fixed, data)
    assert frun.run_id != run.run_id and frun.rng_seed == run.rng_seed
    a = run_chunk(cfg, [run], data, torch.device("cpu"))[0]
    b = run_chunk(fixed, [frun], data, torch.device("cpu"))[0]
    assert a["weights"] == b["weights"] and a["train_acc"] == b["train_acc"]


def test_checkpoint_rows_turn_back_into_their_runs(ckpt, tmp_path, one_thread):
    cfg = _cfg(ckpt, seeds=1)
    data = load_data(cfg)
    row = run_chunk(cfg, build_runs(cfg, data), data, torch.device("cpu"))[0]
    with pytest.raises(ValueError, match="give init_checkpoint"):
        Run.from_row(row)
    other = str(tmp_path / "other.pt")
    save_init(other, W16, seed=12)
    with pytest.raises(ValueError, match="starts from init checkpoint:"):
        Run.from_row(row, init_checkpoint=other)
    run, one = Run.from_row(row, init_checkpoint=ckpt)
    assert run.run_id == row["run_id"] == run_id(run.to_row()) and one.fixed_init().id == FixedInit.load(ckpt).id
    again = rerun(row, init_checkpoint=ckpt)
    assert again["run_id"] == row["run_id"] and again["weights"] == row["weights"]
    random_row = run_chunk(_cfg(None, seeds=1), build_runs(_cfg(None, seeds=1), data), data, torch.device("cpu"))[0]
    with pytest.raises(ValueError, match="give no init_checkpoint"):
        Run.from_row(random_row, init_checkpoint=ckpt)


def test_a_resumed_checkpoint_sweep_skips_what_is_stored(ckpt, tmp_path, one_thread, capsys):
    store = ResultStore(str(tmp_path / "P"))
    first = run_sweep(_cfg(ckpt, seeds=1), store=store)
    assert len(first) == 1
    more = run_sweep(_cfg(ckpt, seeds=2), store=store)      # resumed with one more data order
    assert [r["seed"] for r in more] == [1] and len(store.done()) == 2
    assert run_sweep(_cfg(ckpt, seeds=2), store=store) == []
    argv = ["prune", "--method", "gmp", "--widths", "3,3,3", "--nnz", "15", "--lrs", "0.1", "--schedules", "cosine",
            "--seeds", "2", "--epochs", "1", "--init-checkpoint", ckpt, "--out", store.path, "--quiet", "--jobs", "1"]
    capsys.readouterr()
    assert main(argv) == 0   # the CLI's runs are the full spiral's: new, then stored
    assert "2 runs done, 0 already stored" in capsys.readouterr().out
    assert main(argv) == 0
    assert "0 runs done, 2 already stored" in capsys.readouterr().out


def test_default_rows_keep_their_ids():
    """No checkpoint: the configuration and run ids are those computed before the option existed."""
    cfg = SweepConfig(method="gmp", widths=(2, 4, 4, 1), nnz=(12,), lrs=(0.1,), schedules=("step",), seeds=2,
                      epochs=2, subsample=40)
    runs = build_runs(cfg, load_data(cfg))
    assert [r.run_id for r in runs] == ["e2926c36cd036563", "07a79b83a76d3df0"]   # ids at commit 155ec18
    assert [r.init_seed for r in runs] == [5873284831986800066, 417146949029266680]
    assert all(r.config["init"] == "random" and "init_checkpoint" not in r.config for r in runs)


# -- the search with a fixed init --------------------------------------------------------------
def test_fixed_init_phase1_trains_exactly_the_architectures_under_the_budget(ckpt, tiny, tmp_path):
    def params(h):   # weights and biases, counted by hand
        w = (2, *h, 1)
        return sum(w[i] * w[i + 1] + w[i + 1] for i in range(len(w) - 1))

    brute = {h for h in itertools.product(range(1, 17), repeat=3) if params(h) < 37}
    assert dense_param_count((2, 3, 3, 3, 1)) == 37 and dense_param_count((2, 3, 2, 2, 1)) == 26
    assert set(phase1_architectures(2, 16, 1, 3, 37)) == brute and len(brute) == 93 and (3, 2, 2) in brute
    below = dense_param_count((2, 2, 2, 2, 1))   # 21: a handful of architectures, trained for real
    grid = Grid(lrs=(0.1,), schedules=("cosine",), seeds=1, epochs=1)
    store = ResultStore(str(tmp_path / "W"))
    init = FixedInit.load(ckpt)
    search_widths(0.99, grid, store=store, data=tiny, init=init, params_below=below, **QUIET)
    df = store.load()
    trained = {tuple(int(v) for v in w[1:-1]) for w in df["widths"]}
    assert trained == {h for h in brute if params(h) < below} and len(df) == len(trained)
    assert set(df["init"]) == {f"checkpoint:{init.id}"} and df["init_seed"].isna().all()


def test_orbits_are_refused_with_a_fixed_init(ckpt, tiny, tmp_path, capsys):
    init = FixedInit.load(ckpt)
    grid = Grid(lrs=(0.1,), schedules=("cosine",), seeds=1, epochs=1)
    with pytest.raises(ValueError, match="labelled"):
        search_masks((1, 1, 2), 0.99, grid, store=ResultStore(str(tmp_path / "x")), data=tiny, init=init, **QUIET)
    assert main(["search", "masks", "--widths", "1,1,2", "--init-checkpoint", ckpt, "--symmetry", "orbits",
                 "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "orbits is valid only for independent random inits" in err
    assert not (tmp_path / "y").exists()
    store = ResultStore(str(tmp_path / "z"))   # the default with a checkpoint: labelled masks
    res = search_masks((1, 1, 2), 0.99, grid, store=store, data=tiny, init=init, symmetry="labelled", max_nnz=7,
                       **QUIET)
    df = store.load()
    assert res.trained == len(df) > 0 and set(df["init"]) == {f"checkpoint:{init.id}"}
    assert {r.symmetry for r in map(SearchRun.from_row, df.to_dict("records"))} == {"labelled"}
    assert math.isfinite(df["train_acc"].max())
