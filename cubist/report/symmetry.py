"""Masks up to hidden-unit symmetry: how many weights two masks share, and whether they are one orbit.

Hidden units are interchangeable jointly: permuting hidden layer ``l`` permutes the rows of
``W_l`` and the columns of ``W_{l+1}``; inputs and output stay labelled (ALGORITHMS.md §3). The
group is :func:`cubist.masks.hidden_unit_permutations`, the canonical form of an orbit
:func:`search.enumerate.orbit_key`. Tested against brute force over every joint permutation.
"""
from __future__ import annotations

import numpy as np

from cubist.masks import effective_masks, hidden_unit_permutations, widths_key
from search.enumerate import orbit_key

EXACT_MAX_WIDTH = 5              # exact permutation search for hidden widths up to this (6: ~0.2 s a pair)


def compact_masks(masks) -> list[np.ndarray]:
    """The effective weights (§5) with every hidden unit that carries none of them removed."""
    eff = effective_masks(masks)
    keep = [np.ones(eff[0].shape[1], dtype=bool)]
    for l in range(len(eff) - 1):
        keep.append(eff[l].any(axis=1) | eff[l + 1].any(axis=0))
    keep.append(np.ones(eff[-1].shape[0], dtype=bool))
    return [m[keep[l + 1]][:, keep[l]] for l, m in enumerate(eff)]


def pad_masks(masks, widths) -> list[np.ndarray]:
    """Masks grown to ``widths`` with empty units appended (the same function, more zeros)."""
    widths = widths_key(widths)
    out = []
    for l, m in enumerate(masks):
        m = np.asarray(m) != 0
        p = np.zeros((widths[l + 1], widths[l]), dtype=bool)
        p[: m.shape[0], : m.shape[1]] = m
        out.append(p)
    return out


def mask_widths(masks) -> tuple[int, ...]:
    return (int(masks[0].shape[1]),) + tuple(int(m.shape[0]) for m in masks)


def _identity(d: int) -> np.ndarray:
    return np.arange(d, dtype=np.int64)[None, :]


def _pair_overlap(A: np.ndarray, B: np.ndarray, p_in: np.ndarray, p_out: np.ndarray) -> np.ndarray:
    """``G[q, p] = sum_ij A[i, j] * B[p_out[q][i], p_in[p][j]]`` for all permutation pairs."""
    Bq = B[p_out]                                                      # (nq, out, in)
    C = np.einsum("ij,qik->qjk", A.astype(np.int64), Bq.astype(np.int64))  # (nq, in, in)
    d = A.shape[1]
    return C[:, np.arange(d)[None, :], p_in].sum(axis=-1)              # (nq, np)


def _exact_overlap(A, B) -> int:
    """Max shared nonzeros over joint hidden-unit permutations: DP along the layer chain.

    With ``P_h`` the permutation of hidden layer ``h`` (inputs and output fixed), the overlap
    is a sum of terms each coupling two consecutive ``P``, so the maximum is a Viterbi pass
    over permutations: cost ``sum_h d_h! d_{h+1}! d_h`` instead of ``prod_h d_h!``.
    """
    w = mask_widths(A)
    perms = [_identity(w[0])] + [hidden_unit_permutations(d) for d in w[1:-1]] + [_identity(w[-1])]
    value = np.zeros(1, dtype=np.int64)                                 # over perms of the input layer
    for l in range(len(A)):
        G = _pair_overlap(A[l], B[l], perms[l], perms[l + 1])           # (n_{l+1}, n_l)
        value = (G + value[None, :]).max(axis=1)
    return int(value.max())


def _assign(S: np.ndarray) -> np.ndarray:
    """Permutation ``p`` maximising ``sum_i S[i, p[i]]`` (Hungarian; greedy if scipy is missing)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # greedy: take the largest remaining entry
        d = S.shape[0]
        p, used_r, used_c = np.zeros(d, dtype=np.int64), set(), set()
        for flat in np.argsort(-S, axis=None, kind="stable"):
            i, j = divmod(int(flat), d)
            if i not in used_r and j not in used_c:
                p[i] = j
                used_r.add(i)
                used_c.add(j)
        return p
    r, c = linear_sum_assignment(S, maximize=True)
    p = np.zeros(S.shape[0], dtype=np.int64)
    p[r] = c
    return p


def _overlap_given(A, B, perms) -> int:
    return int(sum((A[l] & B[l][perms[l + 1]][:, perms[l]]).sum() for l in range(len(A))))


def _heuristic_overlap(A, B, rounds: int = 50) -> int:
    """A lower bound on the max overlap: coordinate ascent, one linear assignment per hidden layer.

    Fixing every other layer's permutation, the overlap is linear in ``P_h`` (an assignment
    problem over the rows of ``W_h`` and columns of ``W_{h+1}``), solved exactly; sweeps repeat
    until nothing improves. Started from the identity. The value is achieved by an actual joint
    permutation, so it never overstates the overlap.
    """
    w = mask_widths(A)
    perms = [np.arange(d) for d in w]
    best = _overlap_given(A, B, perms)
    for _ in range(rounds):
        for h in range(1, len(w) - 1):
            Ai, Bi = A[h - 1].astype(np.int64), B[h - 1][:, perms[h - 1]].astype(np.int64)
            Ao, Bo = A[h].astype(np.int64), B[h][perms[h + 1]].astype(np.int64)
            # S[i, k]: shared weights if unit i of A is matched with unit k of B
            S = Ai @ Bi.T + Ao.T @ Bo
            perms[h] = _assign(S)
        value = _overlap_given(A, B, perms)
        if value <= best:
            break
        best = value
    return best


def max_shared_weights(a, b, exact_max_width: int = EXACT_MAX_WIDTH) -> tuple[int, bool]:
    """Most nonzero weights two masks share under joint permutations of their hidden units.

    Hidden units are interchangeable jointly (permuting hidden layer ``l`` permutes the rows of
    ``W_l`` and the columns of ``W_{l+1}``; inputs and output are labelled, ALGORITHMS.md §3).
    Masks of different widths are padded with empty units to the common widths. Returns
    ``(shared, exact)``: exact by dynamic programming when every hidden width is at most
    ``exact_max_width``, otherwise a lower bound from :func:`_heuristic_overlap`.
    """
    a = [np.asarray(m) != 0 for m in a]
    b = [np.asarray(m) != 0 for m in b]
    wa, wb = mask_widths(a), mask_widths(b)
    if len(wa) != len(wb) or wa[0] != wb[0] or wa[-1] != wb[-1]:
        raise ValueError(f"masks of widths {wa} and {wb} have different depth, inputs or outputs")
    common = tuple(max(x, y) for x, y in zip(wa, wb))
    a, b = pad_masks(a, common), pad_masks(b, common)
    if max(common[1:-1], default=0) <= exact_max_width:
        return _exact_overlap(a, b), True
    return _heuristic_overlap(a, b), False


def same_orbit(a, b, canonical: bool = True) -> bool:
    """Whether two masks are equal up to joint permutations of their hidden units.

    By the search's canonical form (:func:`search.enumerate.orbit_key`, exact) unless
    ``canonical=False`` or a stabiliser is too large to list; then by :func:`max_shared_weights`:
    exact for hidden widths up to ``EXACT_MAX_WIDTH``; beyond, a True is certain (a permutation
    mapping one mask onto the other was found) but a False may miss a match.
    """
    a = [np.asarray(m) != 0 for m in a]
    b = [np.asarray(m) != 0 for m in b]
    if mask_widths(a) != mask_widths(b):
        return False
    if canonical:
        try:
            return orbit_key(a) == orbit_key(b)
        except ValueError:  # a stabiliser too large to list: fall back to the overlap
            pass
    na, nb = sum(int(m.sum()) for m in a), sum(int(m.sum()) for m in b)
    if na != nb:
        return False
    shared, _ = max_shared_weights(a, b)
    return shared == na
