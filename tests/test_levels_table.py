"""results/levels.py: the per-level table of a phase-2 store, from hand-made rows."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from handmade import W3, random_mask

from cubist.masks import mask_counts
from cubist.store import ResultStore, make_row
from search.enumerate import count_masks

spec = importlib.util.spec_from_file_location("levels", Path(__file__).resolve().parents[1] / "results" / "levels.py")
levels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(levels)


def _row(masks, key, seed, acc, rnd, engine):
    config = dict(kind="search_masks", method="mask", widths=list(W3), init_width=16, lr=0.1, schedule="cosine",
                  epochs=50, batch_size=128, momentum=0.9, weight_decay=5e-4, seed=seed, target_nnz=None,
                  params={"mask": key, "symmetry": "orbits"}, dataset_id="handmade")
    return make_row(config, masks=masks, metrics=dict(train_acc=acc, **mask_counts(masks)), extra={"round": rnd},
                    engine=engine, wall_time_s=0.0)


def test_level_table_counts_masks_rounds_and_thresholds(tmp_path):
    a, b, c = random_mask(W3, 20, 1), random_mask(W3, 20, 2), random_mask(W3, 18, 3)
    rows = [_row(a, "a", 0, 0.97, 0, "numba/znver1"), _row(a, "a", 1, 0.996, 1, "numba/znver1"),
            _row(a, "a", 3, 0.99, 2, "numba/znver1"), _row(b, "b", 0, 0.5, 0, "numba"),
            _row(c, "c", 0, 0.951, 0, "numba")]
    ResultStore(tmp_path / "s").write(rows)
    table = levels.level_table(str(tmp_path / "s"), 0.995, (0.99, 0.95)).splitlines()
    assert table[0].startswith("| weights | masks | masks trained | runs | masks in round 1 | in round 2 | best run")
    counts = count_masks(W3)
    assert table[2] == f"| 18 | {counts[18]:,} | 1 | 1 | 0 | 0 | 0.9510 | 0 | 0 | 1 |"
    assert table[3] == f"| 20 | {counts[20]:,} | 2 | 4 | 1 | 1 | 0.9960 | 1 | 2 | 3 |"
    assert table[-1] == "5 runs; engines: numba/znver1 3, numba 2"
