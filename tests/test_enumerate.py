"""Mask enumeration (search.enumerate) against independent brute force.

Brute force: every labelled eligible mask from itertools.product over bits, canonicalised by
trying every joint hidden-unit permutation (itertools.permutations) and taking the smallest
row-major bit string, read as an integer (all strings of one shape have the same length).
"""
import itertools
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from cubist.masks import pack_masks, unpack_masks
from search import (canonical_mask, count_masks, enumerate_masks, iter_mask_batches, orbit_key, orbit_keys,
                    rank_ranges, write_masks_parquet)
from search import enumerate as en


# ---------------------------------------------------------------------------------------------
# brute force
# ---------------------------------------------------------------------------------------------
def eligible_layers(r, c):
    out = []
    for bits in itertools.product((False, True), repeat=r * c):
        m = np.array(bits, dtype=bool).reshape(r, c)
        if m.any(axis=0).all() and m.any(axis=1).all():
            out.append(m)
    return out


def brute_eligible(widths, searched):
    per_layer = [eligible_layers(widths[l + 1], widths[l]) if l in searched
                 else [np.ones((widths[l + 1], widths[l]), dtype=bool)] for l in range(len(widths) - 1)]
    return [list(combo) for combo in itertools.product(*per_layer)]


def flat_bits(masks):
    """(B, total bits) of a list of masks or of batched layers."""
    if isinstance(masks[0], np.ndarray) and masks[0].ndim == 2:
        masks = [m[None] for m in masks]
    return np.concatenate([np.asarray(m).reshape(len(m), -1) for m in masks], axis=1).astype(np.int64)


def as_int(bits):
    """Row-major bit strings as integers, first bit most significant (lexicographic order)."""
    return bits @ (1 << np.arange(bits.shape[1] - 1, -1, -1, dtype=np.int64))


def group_gathers(widths):
    """For every joint hidden-unit permutation, the gather index of the flattened mask bits."""
    n_layers = len(widths) - 1
    hidden = [list(itertools.permutations(range(d))) for d in widths[1:-1]]
    index = np.arange(sum(widths[l] * widths[l + 1] for l in range(n_layers)))
    blocks, off = [], 0
    for l in range(n_layers):
        blocks.append(index[off:off + widths[l] * widths[l + 1]].reshape(widths[l + 1], widths[l]))
        off += widths[l] * widths[l + 1]
    out = []
    for ps in itertools.product(*hidden):
        units = [tuple(range(widths[0]))] + list(ps) + [tuple(range(widths[-1]))]
        out.append(np.concatenate([blocks[l][list(units[l + 1])][:, list(units[l])].ravel()
                                   for l in range(n_layers)]))
    return out


def brute_keys(widths, bits):
    """Smallest integer encoding over the group of every mask (rows of ``bits``)."""
    return np.min([as_int(bits[:, g]) for g in group_gathers(widths)], axis=0)


CASES = [
    ((2, 2, 2, 2, 1), None),
    ((2, 3, 2, 2, 1), None),
    ((2, 2, 3, 2, 1), None),
    ((2, 3, 2, 2, 1), (0, 2)),      # middle layer dense
    ((2, 2, 3, 2), (0, 1, 2)),      # output layer searched (outputs stay labelled)
    ((2, 2, 3, 2, 1), (1,)),        # only the middle layer searched
]


def default_searched(widths, searched):
    return tuple(range(len(widths) - 2)) if searched is None else searched


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def case(request):
    widths, searched = request.param
    masks = brute_eligible(widths, default_searched(widths, searched))
    bits = flat_bits([np.stack(layer) for layer in zip(*masks)])
    return widths, searched, bits, brute_keys(widths, bits)


def enumerated(widths, searched, symmetry, **kw):
    out = list(enumerate_masks(widths, searched, symmetry, **kw))
    return out, (as_int(flat_bits([np.stack(layer) for layer in zip(*out)])) if out else np.zeros(0, np.int64))


# ---------------------------------------------------------------------------------------------
# enumeration against brute force
# ---------------------------------------------------------------------------------------------
def test_orbits_one_canonical_mask_per_orbit(case):
    widths, searched, bits, keys = case
    masks, codes = enumerated(widths, searched, "orbits")
    own_keys = brute_keys(widths, flat_bits([np.stack(layer) for layer in zip(*masks)]))
    assert np.array_equal(codes, own_keys)                  # each is its orbit's smallest element
    assert len(set(codes.tolist())) == len(codes)           # no two equivalent
    assert set(codes.tolist()) == set(keys.tolist())        # none missing


def test_labelled_every_eligible_mask_once(case):
    widths, searched, bits, _ = case
    _, codes = enumerated(widths, searched, "labelled")
    assert len(codes) == len(bits)
    assert sorted(codes.tolist()) == sorted(as_int(bits).tolist())


@pytest.mark.parametrize("symmetry", ["orbits", "labelled"])
def test_nnz_order_and_counts(case, symmetry):
    widths, searched, bits, keys = case
    masks, _ = enumerated(widths, searched, symmetry)
    nnz = [int(sum(m.sum() for m in mask)) for mask in masks]
    assert nnz == sorted(nnz)
    members = np.unique(keys, return_index=True)[1] if symmetry == "orbits" else slice(None)
    expected = Counter(bits[members].sum(1).tolist())
    assert dict(Counter(nnz)) == dict(expected)
    assert count_masks(widths, searched, symmetry) == dict(sorted(Counter(nnz).items()))
    ranges = rank_ranges(widths, searched, symmetry)
    assert {n: b - a for n, (a, b) in ranges.items()} == dict(Counter(nnz))
    assert all(nnz[a:b] == [n] * (b - a) for n, (a, b) in ranges.items())


@pytest.mark.parametrize("symmetry", ["orbits", "labelled"])
def test_shards_and_ranks_partition_the_sequence(case, symmetry):
    widths, searched, _, _ = case
    _, full = enumerated(widths, searched, symmetry)
    for n_shards in (1, 3, 7):
        parts = [enumerated(widths, searched, symmetry, shard=(k, n_shards))[1] for k in range(n_shards)]
        assert np.array_equal(np.concatenate(parts), full)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    a, b = len(full) // 5, len(full) // 2 + 1
    assert np.array_equal(enumerated(widths, searched, symmetry, ranks=(a, b))[1], full[a:b])
    levels = sorted(count_masks(widths, searched, symmetry))
    pick = {levels[0], levels[len(levels) // 2]}
    in_pick = np.array([int(sum(m.sum() for m in x)) in pick for x in enumerate_masks(widths, searched, symmetry)])
    filtered = full[in_pick]
    assert np.array_equal(enumerated(widths, searched, symmetry, nnz=pick)[1], filtered)
    parts = [enumerated(widths, searched, symmetry, nnz=pick, shard=(k, 2))[1] for k in range(2)]
    assert np.array_equal(np.concatenate(parts), filtered)


def test_batches_match_masks_and_ranks():
    widths = (2, 3, 2, 2, 1)
    single = list(enumerate_masks(widths, symmetry="labelled"))
    seen = 0
    for ranks, nnz, layers in iter_mask_batches(widths, symmetry="labelled", batch_size=1000, with_ranks=True):
        assert len(nnz) <= 1000 and [x.shape[1:] for x in layers] == [(3, 2), (2, 3), (2, 2), (1, 2)]
        assert np.array_equal(ranks, np.arange(seen, seen + len(nnz)))
        for i in range(len(nnz)):
            assert all(np.array_equal(a, b[i]) for a, b in zip(single[seen + i], layers))
            assert nnz[i] == sum(x[i].sum() for x in layers)
        seen += len(nnz)
    assert seen == len(single) == 25 * 25 * 7


# ---------------------------------------------------------------------------------------------
# the paper's (3, 3, 3) search space
# ---------------------------------------------------------------------------------------------
def test_333_counts_and_representatives():
    widths = (2, 3, 3, 3, 1)
    labelled = count_masks(widths, symmetry="labelled")
    assert sum(labelled.values()) == 25 * 265 * 265 == 1_755_625
    assert rank_ranges(widths, symmetry="labelled")[27][1] == 1_755_625
    orbits = count_masks(widths)
    nnz, layers = zip(*iter_mask_batches(widths, batch_size=4096))
    nnz, layers = np.concatenate(nnz), [np.concatenate(x) for x in zip(*layers)]
    assert dict(sorted(Counter(nnz.tolist()).items())) == orbits
    assert np.all(np.diff(nnz) >= 0)
    codes = as_int(flat_bits(layers))
    assert np.array_equal(codes, brute_keys(widths, flat_bits(layers)))  # canonical, pairwise inequivalent
    assert len(np.unique(codes)) == len(codes) == sum(orbits.values())


# ---------------------------------------------------------------------------------------------
# canonical form of arbitrary masks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("widths", [(2, 3, 3, 3, 1), (3, 4, 3, 2), (2, 2, 3, 2, 2)])
def test_canonical_mask_matches_brute_force(widths):
    rng = np.random.default_rng(sum(widths))
    batch = [rng.random((60, widths[l + 1], widths[l])) < rng.uniform(0.2, 0.8) for l in range(len(widths) - 1)]
    canon = canonical_mask(batch)
    assert np.array_equal(as_int(flat_bits(canon)), brute_keys(widths, flat_bits(batch)))
    keys = orbit_keys(batch)
    for i in range(0, 60, 7):
        mask = [m[i] for m in batch]
        assert orbit_key(mask) == keys[i]
        assert all(np.array_equal(a, b[i]) for a, b in zip(canonical_mask(mask), canon))
    same = as_int(flat_bits(canon))
    assert all((keys[i] == keys[j]) == (same[i] == same[j]) for i in range(60) for j in range(60))


def test_canonical_mask_invariant_on_wider_masks():
    rng = np.random.default_rng(5)
    widths = (3, 9, 6, 2)
    mask = [rng.random((widths[l + 1], widths[l])) < 0.5 for l in range(3)]
    canon = canonical_mask(mask)
    for _ in range(5):
        p1, p2 = rng.permutation(9), rng.permutation(6)
        moved = [mask[0][p1], mask[1][p2][:, p1], mask[2][:, p2]]
        assert orbit_key(moved) == orbit_key(mask)
        assert all(np.array_equal(a, b) for a, b in zip(canonical_mask(moved), canon))
    assert all(np.array_equal(a, b) for a, b in zip(canonical_mask(canon), canon))


# ---------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("symmetry", ["orbits", "labelled"])
def test_write_masks_parquet(tmp_path, symmetry):
    widths = (2, 2, 3, 2, 1)
    path = tmp_path / "masks.parquet"
    counts = write_masks_parquet(path, widths, symmetry=symmetry, batch_size=500)
    assert counts == count_masks(widths, symmetry=symmetry)
    table = pq.read_table(path)
    assert table.column_names == ["rank", "nnz", "mask_bits", "mask_shapes", "orbit_key"]
    rows = table.to_pylist()
    masks = list(enumerate_masks(widths, symmetry=symmetry))
    assert [r["rank"] for r in rows] == list(range(len(masks)))
    for row, mask in zip(rows, masks):
        assert row["mask_bits"] == pack_masks(mask)[0] and row["mask_shapes"] == pack_masks(mask)[1]
        assert all(np.array_equal(a, b) for a, b in zip(unpack_masks(row["mask_bits"], row["mask_shapes"]), mask))
        assert row["nnz"] == sum(m.sum() for m in mask)
    sample = range(0, len(rows), 37)
    assert [rows[i]["orbit_key"] for i in sample] == [orbit_key(masks[i]) for i in sample]
    n_orbits = sum(count_masks(widths).values())
    assert len({r["orbit_key"] for r in rows}) == n_orbits
    assert b"symmetry" in table.schema.metadata[b"cubist.enumeration"]


# ---------------------------------------------------------------------------------------------
# numba kernels against plain Python
# ---------------------------------------------------------------------------------------------
def codes_of(m):
    return en.masks_to_codes(m)


def test_permute_code_and_codes_roundtrip():
    rng = np.random.default_rng(0)
    for c in (1, 3, 7):
        m = rng.random((20, c)) < 0.5
        assert np.array_equal(en.codes_to_masks(codes_of(m), c), m)
        perm = rng.permutation(c).astype(np.int64)
        got = [en._permute_code(int(x), perm, c) for x in codes_of(m)]
        assert got == codes_of(m[:, perm]).tolist()


@pytest.mark.parametrize("r,c", [(1, 3), (2, 2), (3, 2), (2, 3), (3, 3)])
def test_eligible_codes(r, c):
    brute = [codes_of(m).tolist() for m in eligible_layers(r, c)]
    got = en._eligible_codes(r, c, False).tolist()
    assert got == sorted(brute)
    assert en._eligible_codes(r, c, True).tolist() == [list(x) for x in sorted({tuple(sorted(x)) for x in brute})]
    assert en._row_popcounts(np.array(got, dtype=np.int64).reshape(-1, r)).tolist() == \
        [sum(bin(v).count("1") for v in x) for x in got]


def test_row_stabilizer_and_unique_perms():
    codes = np.array([1, 1, 2, 5, 5, 5], dtype=np.int64)
    got = {tuple(p) for p in en._row_stabilizer(codes)}
    brute = {p for p in itertools.permutations(range(6)) if all(codes[list(p)] == codes)}
    assert got == brute and len(en._row_stabilizer(codes)) == 12
    perms = np.array([[2, 0, 1], [0, 1, 2], [2, 0, 1], [1, 0, 2]], dtype=np.int64)
    assert en._unique_perms(perms).tolist() == [[0, 1, 2], [1, 0, 2], [2, 0, 1]]


def test_canonical_flags_min_image_and_next_group():
    rng = np.random.default_rng(1)
    r, c = 3, 4
    group = np.array(sorted(set(itertools.permutations(range(c))) & {(0, 1, 2, 3), (1, 0, 2, 3), (0, 1, 3, 2),
                                                                      (1, 0, 3, 2)}), dtype=np.int64)
    cands = np.array(sorted({tuple(sorted(rng.integers(1, 16, r))) for _ in range(200)}), dtype=np.int64)

    def images(x):
        return [sorted(codes_of(en.codes_to_masks(x, c)[:, list(q)]).tolist()) for q in group]

    flags = en._canonical_flags(cands, group, c, True)
    assert flags.tolist() == [list(x) <= min(images(x)) for x in cands]
    for x in cands[:40]:
        best, t = en._min_image(x, group, c, True)
        assert best.tolist() == min(images(x))
        assert any(codes_of(en.codes_to_masks(x, c)[:, list(q)][t]).tolist() == best.tolist() for q in group)
        canon = np.array(min(images(x)), dtype=np.int64)
        m = en.codes_to_masks(canon, c)
        brute = sorted(p for p in itertools.permutations(range(r))
                       if any(np.array_equal(m[list(p)][:, list(q)], m) for q in group))
        assert [tuple(p) for p in en._next_group(canon, group, c).tolist()] == brute
    canons = np.array([en._min_image(x, group, c, True)[0] for x in cands[:20]])
    flat, off = en._next_groups(canons, group, c)
    for i, x in enumerate(canons):
        assert np.array_equal(flat[off[i]:off[i + 1]], en._next_group(x, group, c))


def test_small_kernels():
    a = np.array([5, 1, 4, 1, 9], dtype=np.int64)
    en._insertion_sort(a)
    assert a.tolist() == [1, 1, 4, 5, 9]
    for x, y in [([1, 2], [1, 3]), ([2, 0], [1, 9]), ([3, 3], [3, 3])]:
        x, y = np.array(x, dtype=np.int64), np.array(y, dtype=np.int64)
        assert en._lex_compare(x, y) == (x.tolist() > y.tolist()) - (x.tolist() < y.tolist())


def test_argument_errors():
    with pytest.raises(ValueError):
        list(enumerate_masks((2, 2, 1), symmetry="sorted"))
    with pytest.raises(ValueError):
        list(enumerate_masks((2, 2, 1), shard=(2, 2)))
    with pytest.raises(ValueError):
        list(enumerate_masks((2, 2, 1), searched_layers=(3,)))
    with pytest.raises(ValueError):
        next(enumerate_masks((2, 7, 7, 1)))  # a 7x7 layer has too many candidates
    assert sum(count_masks((2, 16, 16, 16, 1), symmetry="labelled").values()) > 0


def test_degenerate_shapes():
    assert [[m.tolist() for m in x] for x in enumerate_masks((2, 3, 1), searched_layers=())] == \
        [[[[True] * 2] * 3, [[True] * 3]]]
    assert count_masks((2, 3, 1), searched_layers=()) == {9: 1} == count_masks((2, 3, 1), (), "labelled")
    assert [[m.tolist() for m in x] for x in enumerate_masks((2, 1), searched_layers=(0,))] == [[[[True, True]]]]
    for symmetry in ("orbits", "labelled"):
        got = Counter(int(sum(m.sum() for m in x)) for x in enumerate_masks((3, 2, 1), (0, 1), symmetry))
        assert count_masks((3, 2, 1), (0, 1), symmetry) == dict(sorted(got.items()))
