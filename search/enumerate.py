"""Exhaustive, symmetry-reduced enumeration of MLP masks (Zhang & Papyan 2024, ALGORITHMS.md §3).

The paper's phase-2 search trains every *eligible* mask of a small MLP ``widths = (d_0, ..., d_L)``:
in every searched layer (default: all but the output layer, which stays dense) no row and no
column is all zero. A mask is a list of boolean arrays shaped like the weights, ``(out, in)``.

**The group.** Hidden units are interchangeable: a permutation ``p`` of hidden unit-layer ``l``
(``1 <= l < L``) acts by gathering, new unit ``j`` = old unit ``p[j]``, on the rows of ``W_{l-1}``
and on the columns of ``W_l`` *together*; inputs and outputs stay labelled. ``G`` is the product
of the symmetric groups of all hidden unit-layers, whether or not the layers next to them are
searched: a dense (unsearched) layer is fixed by every permutation, so a unit-layer between two
dense layers acts trivially and one next to a single dense layer permutes only the searched side.
The paper removes row permutations inside each layer separately; ``G`` is the finer, joint
symmetry, so there are fewer orbits than the paper's sorted masks.

**The canonical form.** Encode a mask as the bit string of its layers, each flattened row-major,
concatenated (exactly the bits that :func:`cubist.masks.pack_masks` packs). The canonical
representative of an orbit is the element with the lexicographically *smallest* bit string.
Equivalently, with row ``i`` of ``W_l`` read as the integer code ``sum_j W[i, j] 2^(d_l-1-j)``
(column 0 most significant), it is the lexicographically smallest sequence of row codes. It is
computed greedily, layer by layer: ``W_0`` gets its rows sorted ascending; then, with ``H_l``
the permutations of unit-layer ``l`` that fix the canonical layers before it, ``W_l`` (seen in
the frame of one minimiser of the prefix) becomes the smallest ``sort_rows(W_l[:, q])`` over
``q`` in ``H_l``, and ``H_{l+1}`` is the set of ``p`` with ``C_l[p][:, q] == C_l`` for some ``q``
in ``H_l``. ``H_{l+1}`` depends on the prefix only through ``H_l``, so canonical masks are the
paths through a layered graph of (layer, group) nodes.

**Orderly generation.** Per layer and column group ``H`` the enumerator lists the row-sorted
eligible candidates (as code tuples, in lexicographic order), keeps those that are minimal under
``H`` (a numba kernel), and computes each survivor's next group (another kernel). Masks are the
paths through these tables. Counting paths gives the size of every nnz level without
enumerating, which is what makes ranks, shards and skipping cheap. No labelled mask is ever
filtered: work is proportional to the orbit count plus the per-layer candidate lists.

**Order and ranks.** Masks come in increasing total weight nnz (all layers, dense ones
included); within a level, by (nnz of ``W_0``, row codes of ``W_0``, nnz of ``W_1``, row codes
of ``W_1``, ...). The *rank* of a mask is its position in the full sequence for
``(widths, searched_layers, symmetry)``, independent of any ``nnz`` filter. ``ranks=(start,
stop)`` restricts to global ranks in ``[start, stop)``; ``shard=(k, K)`` then splits what is
selected (after ``nnz`` and ``ranks``) into ``K`` contiguous near-equal parts and keeps part
``k``, so shards ``0..K-1`` partition the selection in order.

``symmetry="labelled"`` uses the trivial group: every eligible mask once (the right notion under
a fixed initialisation, where equivalent masks are not statistically interchangeable).

**Counting.** :func:`count_masks` never enumerates: labelled counts by inclusion-exclusion over
zero rows and columns per layer, multiplied across layers as generating polynomials in nnz; orbit
counts by Burnside's lemma, summing over cycle types of ``(p_1, ..., p_{L-1})`` the number of
eligible masks fixed (per nnz), a transfer-matrix product along the chain of layers.

**Sizes and limits** (measured on a busy 2-core box; numba compiles once, ~15 s, then caches).
``(2,3,3,3,1)``: 1,755,625 labelled masks, 12,400 orbits (levels 12..27); tables ~0.5 s,
enumeration ~0.05 s. ``(2,7,3,3,1)``: 473,054,739,625 labelled masks, 8,338,343 orbits (levels
20..47); tables 4-9 s, then ~2-3e5 orbit masks/s per core (measured on 3e5-mask slices; all of
them extrapolate to ~30-40 s on one core, or split with ``shard``); labelled masks are reachable
only in slices, which skip by path counts (3e5 masks at rank 1e11 in 0.5 s). The per-layer candidate list has
``C(2^in + out - 2, out)`` (orbits) or ``(2^in - 1)^out`` (labelled) entries and is refused
beyond ``MAX_CANDIDATES`` (5e7), so a 7x7 layer or anything 16 wide cannot be enumerated.
Groups are explicit permutation lists: hidden widths up to 16, and a stabiliser beyond
``MAX_GROUP`` (2^22 permutations, e.g. ten identical rows) raises ``ValueError``, in the
enumerator and in :func:`canonical_mask` alike (~10 us per (2,3,3,3,1) mask). Labelled counts are
instant up to hidden widths ~16 and take ~3 s at 30, ~30 s at 40 (the integers grow with the
weights); Burnside orbit counts take ~2 s for hidden widths 8, ~16 s for 10, ~60 s for one 11x11
layer, and grow with the square of the number of cycle types (partitions of the width) per
layer. :func:`count_masks` estimates its work from the widths first (:func:`count_work`) and
refuses beyond ``MAX_COUNT_WORK`` (about a minute), so no count hangs; :func:`write_masks_parquet`
refuses a selection beyond ``MAX_WRITE`` masks (2e7, about 1 GB) before writing, and writes
atomically.
"""
from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numba import njit
from numba.typed import List as NumbaList

from cubist.masks import hidden_unit_permutations
from cubist.model import check_widths

Symmetry = Literal["orbits", "labelled"]
SYMMETRIES = ("orbits", "labelled")

MAX_GROUP = 1 << 22           # largest permutation list a kernel may build
MAX_CANDIDATES = 50_000_000   # largest per-layer candidate list the enumerator builds
MAX_PERM_DEGREE = 16          # permutation keys pack entries in 4 bits
MAX_COUNT_WORK = 400_000_000  # largest estimated work of count_masks (~0.1 us a step: 20-60 s)
MAX_WRITE = 20_000_000        # most masks write_masks_parquet writes in one file (about 1 GB)


# --------------------------------------------------------------------------------------------
# numba kernels: rows of a layer are int64 codes, column 0 the most significant bit
# --------------------------------------------------------------------------------------------
@njit(cache=True)
def _permute_code(code, perm, c):
    """Row code after gathering its ``c`` columns by ``perm`` (new column j = old perm[j])."""
    out = 0
    for j in range(c):
        out = (out << 1) | ((code >> (c - 1 - perm[j])) & 1)
    return out


@njit(cache=True)
def _insertion_sort(a):
    for i in range(1, a.shape[0]):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@njit(cache=True)
def _lex_compare(a, b):
    """-1, 0 or 1 as ``a`` is lexicographically below, equal to or above ``b``."""
    for i in range(a.shape[0]):
        if a[i] < b[i]:
            return -1
        if a[i] > b[i]:
            return 1
    return 0


@njit(cache=True)
def _image(codes, perm, c, rows_free, out):
    """``out`` = the layer with columns gathered by ``perm``, rows sorted when they may move."""
    for i in range(codes.shape[0]):
        out[i] = _permute_code(codes[i], perm, c)
    if rows_free:
        _insertion_sort(out)


@njit(cache=True)
def _canonical_flags(cands, group, c, rows_free):
    """For each candidate layer (row codes), whether no column permutation in ``group``
    (followed by row sorting when ``rows_free``) gives a lexicographically smaller one."""
    n, r = cands.shape
    flags = np.ones(n, np.bool_)
    buf = np.empty(r, np.int64)
    for i in range(n):
        for g in range(group.shape[0]):
            _image(cands[i], group[g], c, rows_free, buf)
            if _lex_compare(buf, cands[i]) < 0:
                flags[i] = False
                break
    return flags


@njit(cache=True)
def _min_image(codes, group, c, rows_free):
    """The lexicographically smallest image of a layer under ``group`` (and row sorting), and
    the row gather ``t`` that realises it: ``best[i] = permuted codes[t[i]]``."""
    r = codes.shape[0]
    best = np.empty(r, np.int64)
    buf = np.empty(r, np.int64)
    arg = 0
    _image(codes, group[0], c, rows_free, best)
    for g in range(1, group.shape[0]):
        _image(codes, group[g], c, rows_free, buf)
        if _lex_compare(buf, best) < 0:
            best[:] = buf
            arg = g
    raw = np.empty(r, np.int64)
    for i in range(r):
        raw[i] = _permute_code(codes[i], group[arg], c)
    t = np.empty(r, np.int64)
    used = np.zeros(r, np.bool_)
    for i in range(r):
        for j in range(r):
            if not used[j] and raw[j] == best[i]:
                t[i] = j
                used[j] = True
                break
    return best, t


@njit(cache=True)
def _advance(seq, top, nondecreasing):
    """Step ``seq`` to the next sequence over ``[1, top]`` in lexicographic order (only
    non-decreasing ones if asked); False when it was the last."""
    i = seq.shape[0] - 1
    while i >= 0 and seq[i] == top:
        i -= 1
    if i < 0:
        return False
    seq[i] += 1
    for j in range(i + 1, seq.shape[0]):
        seq[j] = seq[i] if nondecreasing else 1
    return True


@njit(cache=True)
def _covers(seq, full):
    acc = 0
    for i in range(seq.shape[0]):
        acc |= seq[i]
    return acc == full


@njit(cache=True)
def _eligible_codes(r, c, nondecreasing):
    """All ``r x c`` layers with no zero row and no zero column, as row codes in lexicographic
    order; only those with non-decreasing rows when ``nondecreasing``."""
    full = (1 << c) - 1
    seq = np.ones(r, np.int64)
    n = 0
    while True:
        if _covers(seq, full):
            n += 1
        if not _advance(seq, full, nondecreasing):
            break
    out = np.empty((n, r), np.int64)
    seq[:] = 1
    m = 0
    while True:
        if _covers(seq, full):
            out[m] = seq
            m += 1
        if not _advance(seq, full, nondecreasing):
            break
    return out


@njit(cache=True)
def _row_popcounts(codes):
    """Number of ones of each layer (row of ``codes``)."""
    out = np.zeros(codes.shape[0], np.int64)
    for i in range(codes.shape[0]):
        for j in range(codes.shape[1]):
            x = codes[i, j]
            while x:
                x &= x - 1
                out[i] += 1
    return out


@njit(cache=True)
def _factorial(n):
    f = 1
    for k in range(2, n + 1):
        f *= k
    return f


@njit(cache=True)
def _row_stabilizer(codes):
    """All permutations of positions that keep each position inside its run of equal
    consecutive codes (the row stabiliser of a row-sorted layer), identity first."""
    r = codes.shape[0]
    starts = np.empty(r, np.int64)
    lens = np.empty(r, np.int64)
    nb = 0
    total = 1
    i = 0
    while i < r:
        j = i
        while j + 1 < r and codes[j + 1] == codes[i]:
            j += 1
        starts[nb] = i
        lens[nb] = j - i + 1
        nb += 1
        for f in range(2, j - i + 2):
            total *= f
            if total > MAX_GROUP:
                raise ValueError("row stabiliser too large for an explicit permutation list")
        i = j + 1
    out = np.empty((total, r), np.int64)
    avail = np.empty(r, np.int64)
    for t in range(total):
        rem = t
        for b in range(nb):
            s = starts[b]
            size = lens[b]
            fact = _factorial(size)
            idx = rem % fact
            rem //= fact
            for q in range(size):
                avail[q] = s + q
            left = size
            for pos in range(size):
                f = _factorial(size - 1 - pos)
                d = idx // f
                idx %= f
                out[t, s + pos] = avail[d]
                for q in range(d, left - 1):
                    avail[q] = avail[q + 1]
                left -= 1
    return out


@njit(cache=True)
def _perm_key(p):
    """Integer key of a permutation of at most 16 points, ordered like the permutations."""
    key = 0
    for i in range(p.shape[0] - 1):
        key = (key << 4) | p[i]
    return key


@njit(cache=True)
def _unique_perms(perms):
    """Distinct rows of ``perms`` in lexicographic order."""
    n = perms.shape[0]
    keys = np.empty(n, np.int64)
    for i in range(n):
        keys[i] = _perm_key(perms[i])
    order = np.argsort(keys, kind="mergesort")
    keep = 0
    for i in range(n):
        if i == 0 or keys[order[i]] != keys[order[i - 1]]:
            keep += 1
    out = np.empty((keep, perms.shape[1]), np.int64)
    m = 0
    for i in range(n):
        if i == 0 or keys[order[i]] != keys[order[i - 1]]:
            out[m] = perms[order[i]]
            m += 1
    return out


@njit(cache=True)
def _next_group(canon, group, c):
    """Row permutations ``p`` (gather) with ``canon[p][:, q] == canon`` for some ``q`` in
    ``group``, for a row-sorted layer ``canon``: the stabiliser of the canonical prefix
    projected on the next unit-layer. Distinct, in lexicographic order."""
    r = canon.shape[0]
    stab = _row_stabilizer(canon)
    raw = np.empty(r, np.int64)
    srt = np.empty(r, np.int64)
    matches = 0
    for g in range(group.shape[0]):
        for i in range(r):
            raw[i] = _permute_code(canon[i], group[g], c)
        srt[:] = raw
        _insertion_sort(srt)
        if _lex_compare(srt, canon) == 0:
            matches += 1
    if matches * stab.shape[0] > MAX_GROUP:
        raise ValueError("stabiliser too large for an explicit permutation list")
    out = np.empty((matches * stab.shape[0], r), np.int64)
    t = np.empty(r, np.int64)
    used = np.empty(r, np.bool_)
    m = 0
    for g in range(group.shape[0]):
        for i in range(r):
            raw[i] = _permute_code(canon[i], group[g], c)
        srt[:] = raw
        _insertion_sort(srt)
        if _lex_compare(srt, canon) != 0:
            continue
        used[:] = False
        for i in range(r):  # one matching t with raw[t[i]] == canon[i]
            for j in range(r):
                if not used[j] and raw[j] == canon[i]:
                    t[i] = j
                    used[j] = True
                    break
        for s in range(stab.shape[0]):
            for i in range(r):
                out[m, i] = t[stab[s, i]]
            m += 1
    return _unique_perms(out)


@njit(cache=True)
def _next_groups(cands, group, c):
    """:func:`_next_group` of every candidate, stacked; candidate i owns rows off[i]:off[i+1]."""
    n, r = cands.shape
    parts = NumbaList()
    off = np.zeros(n + 1, np.int64)
    for i in range(n):
        g = _next_group(cands[i], group, c)
        parts.append(g)
        off[i + 1] = off[i] + g.shape[0]
    flat = np.empty((off[n], r), np.int64)
    for i in range(n):
        flat[off[i]:off[i + 1]] = parts[i]
    return flat, off


@njit(cache=True)
def _canonicalize(codes, rows, cols):
    """Canonical form of a batch of masks given as row codes ``(B, sum(rows))``, layers in
    order; every layer but the last has permutable rows (hidden units).

    Layer by layer: move to the frame of one minimiser (its row gather also gathers the next
    layer's columns), then minimise the next layer over the prefix's stabiliser.
    """
    out = np.empty_like(codes)
    n_layers = rows.shape[0]
    for b in range(codes.shape[0]):
        work = codes[b].copy()
        group = np.empty((1, cols[0]), np.int64)
        for j in range(cols[0]):
            group[0, j] = j
        off = 0
        for l in range(n_layers):
            r = rows[l]
            rows_free = l + 1 < n_layers
            best, t = _min_image(work[off:off + r], group, cols[l], rows_free)
            out[b, off:off + r] = best
            if rows_free:
                for i in range(rows[l + 1]):
                    work[off + r + i] = _permute_code(work[off + r + i], t, r)
                group = _next_group(best, group, cols[l])
            off += r
    return out


# --------------------------------------------------------------------------------------------
# codes <-> boolean masks
# --------------------------------------------------------------------------------------------
def _shifts(c: int) -> np.ndarray:
    return np.arange(c - 1, -1, -1, dtype=np.int64)


def masks_to_codes(layer: np.ndarray) -> np.ndarray:
    """Row codes ``(..., out)`` of a boolean layer ``(..., out, in)``, column 0 most significant."""
    layer = np.asarray(layer) != 0
    return (layer.astype(np.int64) << _shifts(layer.shape[-1])).sum(axis=-1)


def codes_to_masks(codes: np.ndarray, c: int) -> np.ndarray:
    """Inverse of :func:`masks_to_codes` for ``c`` columns."""
    return ((np.asarray(codes, dtype=np.int64)[..., None] >> _shifts(c)) & 1).astype(bool)


# --------------------------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------------------------
def _check_args(widths, searched_layers, symmetry) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    widths = check_widths(widths)
    n_layers = len(widths) - 1
    if searched_layers is None:
        searched = tuple(range(n_layers - 1))
    else:
        searched = []
        for l in searched_layers:
            if not -n_layers <= int(l) < n_layers:
                raise ValueError(f"searched layer {l} out of range for {n_layers} layers")
            searched.append(int(l) % n_layers)
        searched = tuple(sorted(set(searched)))
    if symmetry not in SYMMETRIES:
        raise ValueError(f"symmetry must be one of {SYMMETRIES}, got {symmetry!r}")
    return widths, searched, symmetry


def _nnz_filter(nnz) -> set[int] | None:
    if nnz is None:
        return None
    if isinstance(nnz, (int, np.integer)):
        return {int(nnz)}
    return {int(n) for n in nnz}


# --------------------------------------------------------------------------------------------
# the orderly enumerator: tables of canonical layers per (layer, column group)
# --------------------------------------------------------------------------------------------
@dataclass
class _Table:
    """Canonical choices of one layer given its column group, sorted by (nnz, codes)."""
    codes: np.ndarray                          # (n, out) int64 row codes
    nxt: np.ndarray                            # (n,) group id of the next unit-layer
    span: dict[int, tuple[int, int]]           # nnz -> [start, stop) in codes
    agg: dict[int, list[tuple[int, int]]]      # nnz -> [(next group id, multiplicity)]


@lru_cache(maxsize=64)
def _candidates(r: int, c: int, nondecreasing: bool) -> np.ndarray:
    size = math.comb(2 ** c + r - 2, r) if nondecreasing else (2 ** c - 1) ** r
    if c > 62 or size > MAX_CANDIDATES:
        raise ValueError(f"a {r}x{c} layer has ~{size:.3g} candidates, beyond the enumerator's "
                         f"limit of {MAX_CANDIDATES:.0e} (count_masks still works)")
    return _eligible_codes(r, c, nondecreasing)


class _Enumerator:
    """Tables, path counts and path walks for one ``(widths, searched, symmetry)``."""

    def __init__(self, widths: tuple[int, ...], searched: tuple[int, ...], symmetry: str):
        self.widths, self.searched, self.symmetry = widths, frozenset(searched), symmetry
        self.n_layers = len(widths) - 1
        self.rows, self.cols = widths[1:], widths[:-1]
        orbits = symmetry == "orbits"
        if orbits and max(widths[1:-1], default=1) > MAX_PERM_DEGREE:
            raise ValueError(f"orbit enumeration supports hidden widths up to {MAX_PERM_DEGREE}")
        self.rows_free = [orbits and l + 1 < self.n_layers for l in range(self.n_layers)]
        self.slab = max(searched) if searched else self.n_layers - 1
        self.tail_nnz = sum(self.rows[l] * self.cols[l] for l in range(self.slab + 1, self.n_layers))
        self._groups: list[np.ndarray] = []
        self._group_ids: dict[tuple[int, bytes], int] = {}
        self._tables: dict[tuple[int, int], _Table] = {}
        self._counts: dict[tuple[int, int, int], int] = {}
        self._levels: tuple[tuple[int, int, int], ...] | None = None
        self.root = self._intern(np.arange(widths[0], dtype=np.int64)[None])

    # groups --------------------------------------------------------------------------------
    def _intern(self, perms: np.ndarray) -> int:
        perms = np.ascontiguousarray(perms, dtype=np.int64)
        key = (perms.shape[1], perms.tobytes())
        gid = self._group_ids.get(key)
        if gid is None:
            gid = self._group_ids[key] = len(self._groups)
            self._groups.append(perms)
        return gid

    def _trivial(self, d: int) -> int:
        return self._intern(np.arange(d, dtype=np.int64)[None])

    def _next_matters(self, l: int) -> bool:
        """Whether the group on unit-layer ``l + 1`` constrains a later canonical choice."""
        return self.rows_free[l] and (l + 1) in self.searched

    # tables --------------------------------------------------------------------------------
    def table(self, l: int, gid: int) -> _Table:
        key = (l, gid)
        if key not in self._tables:
            self._tables[key] = self._build(l, gid)
        return self._tables[key]

    def _build(self, l: int, gid: int) -> _Table:
        r, c = self.rows[l], self.cols[l]
        if l not in self.searched:
            codes = np.full((1, r), (1 << c) - 1, dtype=np.int64)
            nnz = np.array([r * c])
            nxt_gid = self._intern(hidden_unit_permutations(r, MAX_GROUP).copy()) if self._next_matters(l) else self._trivial(r)
            nxt = np.array([nxt_gid])
        else:
            codes = _candidates(r, c, self.rows_free[l])
            group = self._groups[gid]
            if group.shape[0] > 1:
                codes = codes[_canonical_flags(codes, group, c, self.rows_free[l])]
            nnz = _row_popcounts(codes)
            order = np.argsort(nnz, kind="stable")
            codes, nnz = codes[order], nnz[order]
            if self._next_matters(l):
                flat, off = _next_groups(codes, group, c)
                nxt = np.array([self._intern(flat[off[i]:off[i + 1]]) for i in range(len(codes))],
                               dtype=np.int64)
            else:
                nxt = np.full(len(codes), self._trivial(r), dtype=np.int64)
        span, agg = {}, {}
        for k in np.unique(nnz):
            s, e = np.searchsorted(nnz, k, "left"), np.searchsorted(nnz, k, "right")
            span[int(k)] = (int(s), int(e))
            agg[int(k)] = sorted(Counter(nxt[s:e].tolist()).items())
        return _Table(codes, nxt, span, agg)

    # counts --------------------------------------------------------------------------------
    def count(self, l: int, gid: int, n: int) -> int:
        """Number of canonical completions of layers ``l..`` with ``n`` ones in total."""
        key = (l, gid, n)
        if key in self._counts:
            return self._counts[key]
        table = self.table(l, gid)
        if l == self.slab:
            s, e = table.span.get(n - self.tail_nnz, (0, 0))
            total = e - s
        else:
            total = sum(m * self.count(l + 1, g, n - k)
                        for k, pairs in table.agg.items() if k <= n for g, m in pairs)
        self._counts[key] = total
        return total

    def nnz_range(self) -> range:
        lo = hi = 0
        for l in range(self.n_layers):
            r, c = self.rows[l], self.cols[l]
            lo += max(r, c) if l in self.searched else r * c
            hi += r * c
        return range(lo, hi + 1)

    def levels(self) -> tuple[tuple[int, int, int], ...]:
        """``(nnz, first global rank, count)`` of every non-empty level, in order."""
        if self._levels is None:
            out, offset = [], 0
            for n in self.nnz_range():
                cnt = self.count(0, self.root, n)
                if cnt:
                    out.append((n, offset, cnt))
                    offset += cnt
            self._levels = tuple(out)
        return self._levels

    # walks ---------------------------------------------------------------------------------
    def runs(self, l: int, gid: int, n: int, skip: int, take: int, prefix: tuple
             ) -> Iterator[tuple[tuple, np.ndarray]]:
        """Masks ``skip .. skip+take`` (in order) among the completions counted by
        :meth:`count`, as ``(prefix row codes, slab-layer codes (m, out))`` runs."""
        table = self.table(l, gid)
        if l == self.slab:
            s, _ = table.span[n - self.tail_nnz]
            yield prefix, table.codes[s + skip:s + skip + take]
            return
        for k, (s, e) in table.span.items():
            if k > n:
                break
            for idx in range(s, e):
                sub = self.count(l + 1, int(table.nxt[idx]), n - k)
                if skip >= sub:
                    skip -= sub
                    continue
                t = min(take, sub - skip)
                yield from self.runs(l + 1, int(table.nxt[idx]), n - k, skip, t, prefix + (table.codes[idx],))
                take -= t
                skip = 0
                if take == 0:
                    return


@lru_cache(maxsize=16)
def _enumerator(widths: tuple[int, ...], searched: tuple[int, ...], symmetry: str) -> _Enumerator:
    return _Enumerator(widths, searched, symmetry)


def _selection(levels, nnz: set[int] | None, ranks, shard) -> list[tuple[int, int, int, int]]:
    """Selected ``(nnz, level first rank, start, stop)`` global-rank intervals, in order."""
    start, stop = (0, math.inf) if ranks is None else (int(ranks[0]), int(ranks[1]))
    sel = []
    for n, off, cnt in levels:
        lo, hi = max(off, start), min(off + cnt, stop)
        if (nnz is None or n in nnz) and lo < hi:
            sel.append((n, off, lo, hi))
    if shard is None:
        return sel
    k, n_shards = int(shard[0]), int(shard[1])
    if not 0 <= k < n_shards:
        raise ValueError(f"shard must be (k, K) with 0 <= k < K, got {shard}")
    total = sum(hi - lo for _, _, lo, hi in sel)
    a, b = k * total // n_shards, (k + 1) * total // n_shards
    out, pos = [], 0
    for n, off, lo, hi in sel:
        s, e = max(lo, lo + a - pos), min(hi, lo + b - pos)
        if s < e:
            out.append((n, off, s, e))
        pos += hi - lo
    return out


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _iter_code_batches(widths, searched_layers, symmetry, nnz, ranks, shard, batch_size
                       ) -> Iterator[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]:
    """``(ranks (B,), nnz (B,), [row codes (B, out) per layer])`` batches in enumeration order."""
    widths, searched, symmetry = _check_args(widths, searched_layers, symmetry)
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    en = _enumerator(widths, searched, symmetry)
    full = [np.int64((1 << c) - 1) for c in en.cols]
    pending: list[tuple[np.ndarray, np.ndarray, list[np.ndarray]]] = []
    size = 0
    for n, off, lo, hi in _selection(en.levels(), _nnz_filter(nnz), ranks, shard):
        rank = lo
        for prefix, slab in en.runs(0, en.root, n, lo - off, hi - lo, ()):
            m = len(slab)
            layers = [np.broadcast_to(prefix[l], (m, en.rows[l])) for l in range(en.slab)]
            layers.append(slab)
            layers += [np.broadcast_to(full[l], (m, en.rows[l])) for l in range(en.slab + 1, en.n_layers)]
            pending.append((np.arange(rank, rank + m), np.full(m, n), layers))
            rank += m
            size += m
            if size >= batch_size:
                batches, pending = _cut(pending, batch_size, final=False)
                size = len(pending[0][0]) if pending else 0
                yield from batches
    if size:
        yield from _cut(pending, batch_size, final=True)[0]


def _cut(pending, batch_size: int, final: bool) -> tuple[list, list]:
    """Concatenate pending runs into full batches (and a short last one when ``final``);
    return the batches and the pending remainder."""
    ranks = np.concatenate([p[0] for p in pending])
    nnz = np.concatenate([p[1] for p in pending])
    layers = [np.concatenate([p[2][l] for p in pending]) for l in range(len(pending[0][2]))]
    stop = len(ranks) if final else len(ranks) // batch_size * batch_size
    batches = [(ranks[s:s + batch_size], nnz[s:s + batch_size], [x[s:s + batch_size] for x in layers])
               for s in range(0, stop, batch_size)]
    rest = [(ranks[stop:], nnz[stop:], [x[stop:] for x in layers])] if stop < len(ranks) else []
    return batches, rest


def iter_mask_batches(widths, searched_layers=None, symmetry: Symmetry = "orbits", nnz=None, *,
                      batch_size: int = 4096, ranks: tuple[int, int] | None = None,
                      shard: tuple[int, int] | None = None, with_ranks: bool = False):
    """Eligible masks in enumeration order, in batches of ``batch_size`` (the last may be short).

    Yields ``(nnz (B,), [bool (B, out, in) per layer])``, or ``(ranks (B,), nnz, masks)`` with
    ``with_ranks``. Batches may span nnz levels. Arguments as in :func:`enumerate_masks`.
    """
    cols = check_widths(widths)[:-1]
    for rk, nz, codes in _iter_code_batches(widths, searched_layers, symmetry, nnz, ranks, shard, batch_size):
        masks = [codes_to_masks(x, c) for x, c in zip(codes, cols)]
        yield (rk, nz, masks) if with_ranks else (nz, masks)


def enumerate_masks(widths, searched_layers=None, symmetry: Symmetry = "orbits", nnz=None, *,
                    ranks: tuple[int, int] | None = None, shard: tuple[int, int] | None = None
                    ) -> Iterator[list[np.ndarray]]:
    """Stream the eligible masks of an MLP with ``widths`` in increasing total weight nnz.

    Eligible (Zhang & Papyan 2024, §3): no all-zero row or column in any searched layer
    (default: every layer but the output one); unsearched layers are dense. ``symmetry="orbits"``
    yields the canonical (lexicographically smallest) mask of every orbit of the joint
    hidden-unit permutation group, ``"labelled"`` every eligible mask. ``nnz``: an int or a
    collection of totals to keep. ``ranks=(start, stop)``: global ranks to keep; ``shard=(k, K)``:
    part ``k`` of ``K`` contiguous parts of the selection. Deterministic; see the module docstring.
    """
    for _, masks in iter_mask_batches(widths, searched_layers, symmetry, nnz, batch_size=4096,
                                      ranks=ranks, shard=shard):
        for i in range(len(masks[0])):
            yield [m[i].copy() for m in masks]


def rank_ranges(widths, searched_layers=None, symmetry: Symmetry = "orbits") -> dict[int, tuple[int, int]]:
    """``{nnz: (first rank, stop rank)}`` of every level of the enumeration, from the orderly
    tables' path counts (no enumeration); the sizes agree with :func:`count_masks`."""
    widths, searched, symmetry = _check_args(widths, searched_layers, symmetry)
    return {n: (off, off + cnt) for n, off, cnt in _enumerator(widths, searched, symmetry).levels()}


def canonical_mask(masks) -> list[np.ndarray]:
    """The canonical representative of a mask's orbit under joint hidden-unit permutations.

    Canonical = lexicographically smallest row-major bit string (layers concatenated, as in
    :func:`cubist.masks.pack_masks`). Any mask is accepted (eligible or not); leading axes are
    treated as a batch. Raises ``ValueError`` when a stabiliser is too large to list.
    """
    masks = [np.asarray(m) != 0 for m in masks]
    rows = np.array([m.shape[-2] for m in masks], dtype=np.int64)
    cols = np.array([m.shape[-1] for m in masks], dtype=np.int64)
    if any(a != b for a, b in zip(rows[:-1], cols[1:])):
        raise ValueError("consecutive layer masks have mismatched unit counts")
    if max(rows[:-1], default=1) > MAX_PERM_DEGREE or max(cols) > 62:
        raise ValueError(f"canonical_mask supports hidden widths up to {MAX_PERM_DEGREE}, inputs up to 62")
    lead = masks[0].shape[:-2]
    codes = np.concatenate([masks_to_codes(m).reshape(-1, m.shape[-2]) for m in masks], axis=1)
    canon = _canonicalize(np.ascontiguousarray(codes), rows, cols)
    out, off = [], 0
    for r, c in zip(rows, cols):
        out.append(codes_to_masks(canon[:, off:off + r], int(c)).reshape(lead + (int(r), int(c))))
        off += r
    return out


def _packed_rows(masks: list[np.ndarray]) -> list[bytes]:
    """``pack_masks(mask)[0]`` of every mask of a batch, vectorised."""
    flat = np.concatenate([m.reshape(m.shape[0], -1) for m in masks], axis=1)
    return [row.tobytes() for row in np.packbits(flat, axis=1)]


def _keys_from_canonical(layers: list[np.ndarray]) -> list[bytes]:
    """Orbit keys of a batch of canonical masks ``[bool (B, out, in)]``."""
    widths = [layers[0].shape[-1]] + [m.shape[-2] for m in layers]
    header = np.asarray(widths, dtype=">u2").tobytes()
    return [header + bits for bits in _packed_rows(layers)]


def orbit_key(masks) -> bytes:
    """Bytes identifying a mask's orbit: equal exactly for masks equivalent under joint
    hidden-unit permutations (widths as big-endian uint16, then the canonical packed bits)."""
    canon = canonical_mask([np.asarray(m)[None] for m in masks])
    return _keys_from_canonical(canon)[0]


def orbit_keys(masks) -> list[bytes]:
    """:func:`orbit_key` of every mask of a batch ``[bool (B, out, in) per layer]``."""
    return _keys_from_canonical(canonical_mask(masks))


# --------------------------------------------------------------------------------------------
# closed-form counts (no enumeration)
# --------------------------------------------------------------------------------------------
Poly = list  # coefficients of a generating polynomial in the number of ones


def _poly_mul(a: Poly, b: Poly) -> Poly:
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        if x:
            for j, y in enumerate(b):
                out[i + j] += x * y
    return out


def _poly_add(a: Poly, b: Poly, weight: int = 1) -> Poly:
    out = a + [0] * (len(b) - len(a)) if len(b) > len(a) else list(a)
    for i, y in enumerate(b):
        out[i] += weight * y
    return out


def _cycle_types(d: int) -> list[tuple[tuple[int, int], ...]]:
    """Cycle types of permutations of ``d`` points as ``((length, multiplicity), ...)``."""
    def parts(n, largest):
        if n == 0:
            yield ()
            return
        for a in range(min(n, largest), 0, -1):
            for rest in parts(n - a, a):
                yield (a,) + rest
    return [tuple(sorted(Counter(p).items())) for p in parts(d, d)]


def _class_size(d: int, ctype) -> int:
    denom = 1
    for a, m in ctype:
        denom *= a ** m * math.factorial(m)
    return math.factorial(d) // denom


@lru_cache(maxsize=None)
def _fixed_poly(row_type, col_type) -> tuple[int, ...]:
    """Generating polynomial (by nnz) of layers with no zero row/column fixed by a row
    permutation of type ``row_type`` and a column permutation of type ``col_type``.

    A fixed layer is a union of orbits of (row, column) pairs: a row cycle of length a and a
    column cycle of length b give gcd(a, b) orbits of lcm(a, b) entries. Inclusion-exclusion
    over the row and column cycles forced to zero.
    """
    total: Poly = [0]
    for i_vec in itertools.product(*[range(m + 1) for _, m in row_type]):
        for j_vec in itertools.product(*[range(n + 1) for _, n in col_type]):
            weight = (-1) ** (sum(i_vec) + sum(j_vec))
            for (_, m), i in zip(row_type + col_type, i_vec + j_vec):
                weight *= math.comb(m, i)
            poly: Poly = [1]
            for (a, m), i in zip(row_type, i_vec):
                for (b, n), j in zip(col_type, j_vec):
                    size, n_orbits = math.lcm(a, b), math.gcd(a, b) * (m - i) * (n - j)
                    binom = [0] * (size * n_orbits + 1)
                    for t in range(n_orbits + 1):
                        binom[size * t] = math.comb(n_orbits, t)
                    poly = _poly_mul(poly, binom)
            total = _poly_add(total, poly, weight)
    return tuple(total)


@lru_cache(maxsize=None)
def _partition_count(d: int) -> int:
    """The number of partitions of ``d`` (of cycle types of permutations of ``d`` points)."""
    p = [1] + [0] * d
    for part in range(1, d + 1):
        for n in range(part, d + 1):
            p[n] += p[n - part]
    return p[d]


@lru_cache(maxsize=None)
def _type_stats(d: int, trivial: bool) -> tuple[int, int]:
    """``(cycle types, inclusion-exclusion work)`` of one unit-layer in :func:`count_masks`: how
    many cycle types it sums over and the sum over them of (inclusion-exclusion terms x cycles).
    Beyond a few thousand types only lower bounds (the count itself, and the count of 100 beyond
    width 100), enough to refuse."""
    if trivial:
        return 1, d + 1
    p = _partition_count(min(d, 100))
    if p > 5000:
        return p, p
    work = 0
    for t in _cycle_types(d):
        work += math.prod(m + 1 for _, m in t) * len(t)
    return p, work


def count_work(widths, searched_layers=None, symmetry: Symmetry = "orbits") -> float:
    """An estimate of the steps :func:`count_masks` takes (about 0.1 us each), from the widths alone.

    Per searched layer ``r x c``: the fixed-point polynomials, (inclusion-exclusion terms x cycles)
    of the row types times those of the column types, each term ``r c`` long; along the chain,
    (row types x column types) polynomial products of the prefix's length by ``r c``. Both are
    weighted by the size of the integers, which grows with the number of weights. Calibrated
    within a factor 3 on hidden widths 6-11 (orbits) and 30-40 (labelled).
    """
    widths, searched, symmetry = _check_args(widths, searched_layers, symmetry)
    n_layers = len(widths) - 1
    stats = [_type_stats(w, symmetry == "labelled" or u in (0, n_layers)) for u, w in enumerate(widths)]
    work, seen, prefix = 0.0, set(), 1
    for l in range(n_layers):
        r, c = widths[l + 1], widths[l]
        if l in searched and (r, c, stats[l + 1], stats[l]) not in seen:   # _fixed_poly is cached
            seen.add((r, c, stats[l + 1], stats[l]))
            work += stats[l + 1][1] * stats[l][1] * r * c * (1 + r * c / 256) ** 1.5
        work += stats[l + 1][0] * stats[l][0] * prefix * (r * c + 1) * (1 + (prefix + r * c) / 256) ** 1.5
        prefix += r * c
    return work


def _check_count_work(widths, searched, symmetry) -> None:
    work = count_work(widths, searched, symmetry)
    if work > MAX_COUNT_WORK:
        seconds = work * 1e-7
        took = ("more than a year" if seconds > 3.2e7 else f"about {seconds / 3600:.2g} h" if seconds > 3600
                else f"about {seconds:.0f} s")
        raise ValueError(f"widths {','.join(map(str, widths))}: counting the masks ({symmetry}) would take {took} "
                         f"({work:.2g} steps, beyond the limit of {MAX_COUNT_WORK:.0e}); use narrower widths "
                         f"(hidden widths up to {40 if symmetry == 'labelled' else 10} count within a minute)")


def count_masks(widths, searched_layers=None, symmetry: Symmetry = "orbits", nnz=None) -> dict[int, int]:
    """``{nnz: number of masks}`` that :func:`enumerate_masks` yields, without enumerating.

    Labelled: per-layer inclusion-exclusion, multiplied across layers. Orbits: Burnside's lemma,
    the average over the group of the number of fixed eligible masks, summed over cycle types
    of the hidden-unit permutations along the chain of layers. Exact integers.

    Widths whose count would take more than about a minute (:func:`count_work` beyond
    :data:`MAX_COUNT_WORK`, e.g. hidden widths 11 or more for orbits) raise ``ValueError`` at once.
    """
    widths, searched, symmetry = _check_args(widths, searched_layers, symmetry)
    _check_count_work(widths, searched, symmetry)
    n_layers = len(widths) - 1

    def types(u: int):
        if symmetry == "labelled" or u in (0, n_layers):
            return [(((1, widths[u]),), 1)]
        return [(t, _class_size(widths[u], t)) for t in _cycle_types(widths[u])]

    vec = {t: [w] for t, w in types(0)}
    for l in range(n_layers):
        new = {}
        for row_t, w in types(l + 1):
            acc: Poly = [0]
            for col_t, poly in vec.items():
                if l in searched:
                    layer = list(_fixed_poly(row_t, col_t))
                else:
                    layer = [0] * (widths[l] * widths[l + 1]) + [1]
                acc = _poly_add(acc, _poly_mul(poly, layer))
            new[row_t] = [w * x for x in acc]
        vec = new
    (poly,) = vec.values()
    order = 1
    if symmetry == "orbits":
        for d in widths[1:-1]:
            order *= math.factorial(d)
    keep = _nnz_filter(nnz)
    out = {}
    for n, x in enumerate(poly):
        if x and (keep is None or n in keep):
            if x % order:
                raise ArithmeticError("Burnside sum not divisible by the group order")
            out[n] = x // order
    return out


# --------------------------------------------------------------------------------------------
# Parquet output
# --------------------------------------------------------------------------------------------
def write_masks_parquet(path, widths, searched_layers=None, symmetry: Symmetry = "orbits", nnz=None, *,
                        ranks: tuple[int, int] | None = None, shard: tuple[int, int] | None = None,
                        batch_size: int = 65536, max_masks: int = MAX_WRITE) -> dict[int, int]:
    """Write the enumerated masks to a Parquet file; return ``{nnz: count}`` written.

    Columns: ``rank`` (global rank), ``nnz``, ``mask_bits`` and ``mask_shapes`` (as
    :func:`cubist.masks.pack_masks`, the result store's encoding) and ``orbit_key``
    (:func:`orbit_key`). The file metadata records widths, searched layers and symmetry.

    The file is written atomically (a temporary beside ``path``, renamed onto it when complete:
    a killed write leaves ``path`` as it was). A selection of more than ``max_masks`` masks is
    refused before anything is written (select levels with ``nnz``, or ``ranks``/``shard``).
    """
    from cubist.store import write_atomically
    widths, searched, symmetry = _check_args(widths, searched_layers, symmetry)
    levels, offset = [], 0   # (nnz, first rank, count) from the closed-form counts: no table is built yet
    for n, cnt in count_masks(widths, searched, symmetry).items():
        levels.append((n, offset, cnt))
        offset += cnt
    selected = sum(hi - lo for _, _, lo, hi in _selection(levels, _nnz_filter(nnz), ranks, shard))
    if selected > max_masks:
        raise ValueError(f"widths {','.join(map(str, widths))}: {selected:,} {symmetry} masks to write, beyond the "
                         f"limit of {max_masks:,} per file; select nnz levels or rank ranges (or count them only)")
    shapes = [[widths[l + 1], widths[l]] for l in range(len(widths) - 1)]
    schema = pa.schema([
        pa.field("rank", pa.int64()), pa.field("nnz", pa.int32()), pa.field("mask_bits", pa.binary()),
        pa.field("mask_shapes", pa.list_(pa.list_(pa.int32()))), pa.field("orbit_key", pa.binary()),
    ], metadata={"cubist.enumeration": json.dumps(
        {"widths": list(widths), "searched_layers": list(searched), "symmetry": symmetry,
         "canonical_form": "lexicographically smallest row-major bit string under joint hidden-unit permutations"})})
    counts: Counter = Counter()

    def write(tmp):
        with pq.ParquetWriter(tmp, schema) as writer:
            for rk, nz, masks in iter_mask_batches(widths, searched, symmetry, nnz, batch_size=batch_size,
                                                   ranks=ranks, shard=shard, with_ranks=True):
                bits = _packed_rows(masks)
                keys = _keys_from_canonical(masks if symmetry == "orbits" else canonical_mask(masks))
                table = pa.table({
                    "rank": pa.array(rk, pa.int64()), "nnz": pa.array(nz, pa.int32()),
                    "mask_bits": pa.array(bits, pa.binary()),
                    "mask_shapes": pa.array([shapes] * len(rk), pa.list_(pa.list_(pa.int32()))),
                    "orbit_key": pa.array(keys, pa.binary()),
                }, schema=schema)
                writer.write_table(table)
                counts.update(nz.tolist())

    write_atomically(path, write)
    return dict(sorted(counts.items()))


__all__ = [
    "SYMMETRIES", "canonical_mask", "codes_to_masks", "count_masks", "count_work", "enumerate_masks",
    "iter_mask_batches", "masks_to_codes", "orbit_key", "orbit_keys", "rank_ranges",
    "write_masks_parquet",
]
