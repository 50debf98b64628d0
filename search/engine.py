"""Numba CPU engine: train thousands of tiny masked MLPs at once by the paper's protocol.

Zhang & Papyan, "Sparsest Models Elude Pruning" (ICML 2024), §2-3 of ALGORITHMS.md: the search
trains every mask of a small MLP ``widths[0] -> ... -> 1`` (ReLU, one logit, BCE-with-logits)
on a grid of learning rates, schedules and seeds. :func:`train_masks` trains ``R`` such models
in one call and is, model by model, the reference trainer :func:`cubist.train.train_reference`
on a :class:`cubist.model.MaskedMLP` with the same init, mask and seed, up to float32 rounding:

- init: ``cubist.model.init_weights(widths, init_width, init_seed)`` per model (the search gives
  every run its own ``init_seed``; default: the data-order seed), or a fixed ``init``;
  bias masks by :func:`cubist.masks.bias_masks`; masked weights and biases are exactly zero
  and stay so (no work is done for them);
- data order of epoch ``e``: ``cubist.train.epoch_permutation(seed, e, n)``, ``n // batch_size``
  steps (drop_last); learning rate of epoch ``e``: ``cubist.train.lr_at``;
- SGD in PyTorch semantics: ``g = grad + wd*w; buf = momentum*buf + g; w -= lr*buf`` (biases
  decayed too), ``dL/dz = (sigmoid(z) - y) / B``; float32 throughout;
- a non-finite parameter at the end of an epoch stops that model (``diverged``, never raised);
  the final loss and accuracy are over the whole training set (right as
  :func:`cubist.train.correct_predictions`, spelt out in :func:`_evaluate_model`), ``diverged``
  also when the final loss is not finite.

How it is fast. Each model is stored sparsely: its nonzero weights row by row (CSR, for the
forward pass) and column by column (CSC indices, for the backward pass). A step of one model
is one loop over the batch per unit: the forward pass computes a unit from its (up to 4 at a
time) incoming weights; the backward pass, per unit ``c``, reads the deltas of the units ``c``
feeds, accumulates the gradients of those weights and writes ``delta_c`` in the same loop.
Activations and deltas are ``(units, batch)`` float32 rows, so every loop runs over 128
contiguous floats and LLVM emits SIMD code. The step code is inlined into one plain function
that trains a group of models (no calls, hence no atomic reference counting, per step); the
parallel kernel calls it once per group. Models sharing a seed see the same batches:
each epoch's data is gathered once per seed into contiguous ``(steps, inputs, batch)`` arrays,
and a thread trains a group of such models in lockstep, batch by batch, so the batch stays in
L1. Work is spread over threads by a work queue (one task per thread takes the next group from
an atomic counter: early exits make the groups' costs unpredictable), several epochs
per kernel call, so that threads meet rarely (which matters on a shared, oversubscribed machine).
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, prange, types
from numba.extending import intrinsic

from cubist.masks import bias_masks
from cubist.model import check_widths, init_weights
from cubist.train import SCHEDULES, epoch_permutation, lr_at

# fastmath without nnan/ninf: reassociation lets LLVM vectorise the reductions over the batch,
# while NaN and inf keep their IEEE meaning (divergence must stay visible). error_model="numpy":
# divisions without zero checks, which would stop vectorisation.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = dict(fastmath=_FASTMATH, error_model="numpy", cache=True)
_INLINE = dict(_JIT, inline="always")

_U1, _U2, _U3, _U4 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
_F0, _F1 = np.float32(0.0), np.float32(1.0)
_MAX_DATA_BYTES = 64 << 20  # gathered batches per kernel call (seeds x epochs x 600 kB on the spiral)


# -- kernels -----------------------------------------------------------------------------------
# All offsets are uint64 (numba then emits no negative-index wraparound and the loops vectorise).
# A model's activations A and deltas D are flat (units * B) float32 arrays, unit u at u * B.

@intrinsic
def _int32_bits_as_float32(typingctx, x):
    """Reinterpret the bits of an int32 as a float32 (used to build 2**k in :func:`_expf`)."""
    if x != types.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], llvm_ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _fetch_add(typingctx, arr, idx, val):
    """Atomically ``old = arr[idx]; arr[idx] += val``; returns ``old`` (a work queue's next ticket)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1):
        return None

    def codegen(context, builder, sig, args):
        from numba.core import cgutils
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])
        val = context.cast(builder, args[2], sig.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, val, "seq_cst")

    return types.int64(arr, idx, val), codegen


@njit(**_INLINE)
def _expf(x):
    """exp(x) in float32 for x in [-87, 80] (clamped: no overflow, and ``sigmoid`` stays a normal
    float), a Cephes polynomial (~1 ulp); vectorisable."""
    x = min(max(x, np.float32(-87.0)), np.float32(80.0))
    k = np.floor(x * np.float32(1.44269504) + np.float32(0.5))
    r = x - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    scale = _int32_bits_as_float32(np.int32((k + np.float32(127.0)) * np.float32(8388608.0)))
    return (p * r * r + r + _F1) * scale


@njit(**_INLINE)
def _bce(z, y):
    """BCE-with-logits of one logit: max(z, 0) - z*y + log1p(exp(-|z|)); NaN stays NaN."""
    e = _expf(-abs(z))
    s = e / (np.float32(2.0) + e)  # log1p(e) = 2 atanh(s), s in (0, 1/3]
    s2 = s * s
    p = np.float32(1.0 / 15.0)
    p = p * s2 + np.float32(1.0 / 13.0)
    p = p * s2 + np.float32(1.0 / 11.0)
    p = p * s2 + np.float32(1.0 / 9.0)
    p = p * s2 + np.float32(1.0 / 7.0)
    p = p * s2 + np.float32(1.0 / 5.0)
    p = p * s2 + np.float32(1.0 / 3.0)
    p = p * s2 + _F1
    return max(z, _F0) - z * y + np.float32(2.0) * s * p + (z - z)


@njit(**_INLINE)
def _fwd_row(A, ou, B, bias, coff, w, k0, n, relu):
    """Forward pass of one unit: ``A[u] = act(bias + sum_k w[k] A[col k])`` over its n weights.

    ``coff[k]`` is the offset of weight k's input unit. Up to 4 weights are summed in one loop
    over the batch; further weights 4 at a time (a short last chunk padded with weight 0). A
    unit without incoming weights (n = 0) gets its bias, computed as ``bias + 0 * A[input 0]``.
    """
    m = min(n, _U4)
    r = relu and n <= _U4
    c0 = coff[k0] if n > 0 else np.uint64(0)
    w0 = w[k0] if n > 0 else _F0
    if m <= 1:
        for i in range(B):
            x = bias + w0 * A[c0 + i]
            A[ou + i] = _F0 if (r and x < 0) else x
    elif m == 2:
        c1 = coff[k0 + _U1]
        w1 = w[k0 + _U1]
        for i in range(B):
            x = bias + w0 * A[c0 + i] + w1 * A[c1 + i]
            A[ou + i] = _F0 if (r and x < 0) else x
    elif m == 3:
        c1 = coff[k0 + _U1]
        w1 = w[k0 + _U1]
        c2 = coff[k0 + _U2]
        w2 = w[k0 + _U2]
        for i in range(B):
            x = bias + w0 * A[c0 + i] + w1 * A[c1 + i] + w2 * A[c2 + i]
            A[ou + i] = _F0 if (r and x < 0) else x
    else:
        c1 = coff[k0 + _U1]
        w1 = w[k0 + _U1]
        c2 = coff[k0 + _U2]
        w2 = w[k0 + _U2]
        c3 = coff[k0 + _U3]
        w3 = w[k0 + _U3]
        for i in range(B):
            x = bias + w0 * A[c0 + i] + w1 * A[c1 + i] + w2 * A[c2 + i] + w3 * A[c3 + i]
            A[ou + i] = _F0 if (r and x < 0) else x
    k = k0 + m
    end = k0 + n
    while k < end:
        m = min(end - k, _U4)
        r = relu and k + m == end
        c0 = coff[k]
        w0 = w[k]
        c1 = coff[k + _U1] if m > 1 else c0
        w1 = w[k + _U1] if m > 1 else _F0
        c2 = coff[k + _U2] if m > 2 else c0
        w2 = w[k + _U2] if m > 2 else _F0
        c3 = coff[k + _U3] if m > 3 else c0
        w3 = w[k + _U3] if m > 3 else _F0
        for i in range(B):
            x = A[ou + i] + w0 * A[c0 + i] + w1 * A[c1 + i] + w2 * A[c2 + i] + w3 * A[c3 + i]
            A[ou + i] = _F0 if (r and x < 0) else x
        k += m


@njit(**_INLINE)
def _sgd(p, buf, k, g, lr, momentum, weight_decay):
    """One SGD step on p[k] in PyTorch semantics (decay added to the gradient; buf starts at 0)."""
    pk = p[k]
    v = momentum * buf[k] + (g + weight_decay * pk)
    buf[k] = v
    p[k] = pk - lr * v


@njit(**_INLINE)
def _col_pass(A, D, oc, B, roff, widx, w, wbuf, q0, n, zrow, lr, momentum, weight_decay):
    """Backward pass through the n outgoing weights of unit c, then their SGD step.

    Entry q of c's column is the weight ``w[widx[q]]`` from c to the unit at offset ``roff[q]``,
    whose delta is final. In one loop over the batch: the gradient of each weight,
    ``sum_i D[u, i] A[c, i]``, and ``D[c] = [A[c] > 0] * sum_u w_uc D[u]`` (with the weights
    before the step). Returns ``sum_i D[c, i]``, the gradient of c's bias. A unit without
    outgoing weights (n = 0) gets ``D[c] = 0``, computed as ``0 * D[zrow]`` (the output row).
    Input units run this too (their delta is not needed; computing it is cheaper than a branch).
    """
    gb = _F0
    m = min(n, _U4)
    last = n <= _U4
    r0 = roff[q0] if n > 0 else zrow
    w0 = w[widx[q0]] if n > 0 else _F0
    r1 = roff[q0 + _U1] if m > 1 else r0
    w1 = w[widx[q0 + _U1]] if m > 1 else _F0
    r2 = roff[q0 + _U2] if m > 2 else r0
    w2 = w[widx[q0 + _U2]] if m > 2 else _F0
    r3 = roff[q0 + _U3] if m > 3 else r0
    w3 = w[widx[q0 + _U3]] if m > 3 else _F0
    g0 = _F0
    g1 = _F0
    g2 = _F0
    g3 = _F0
    if m <= 1:
        for i in range(B):
            a = A[oc + i]
            d0 = D[r0 + i]
            g0 += d0 * a
            x = w0 * d0
            x = _F0 if (last and a <= 0) else x
            D[oc + i] = x
            gb += x
    elif m == 2:
        for i in range(B):
            a = A[oc + i]
            d0 = D[r0 + i]
            d1 = D[r1 + i]
            g0 += d0 * a
            g1 += d1 * a
            x = w0 * d0 + w1 * d1
            x = _F0 if (last and a <= 0) else x
            D[oc + i] = x
            gb += x
    elif m == 3:
        for i in range(B):
            a = A[oc + i]
            d0 = D[r0 + i]
            d1 = D[r1 + i]
            d2 = D[r2 + i]
            g0 += d0 * a
            g1 += d1 * a
            g2 += d2 * a
            x = w0 * d0 + w1 * d1 + w2 * d2
            x = _F0 if (last and a <= 0) else x
            D[oc + i] = x
            gb += x
    else:
        for i in range(B):
            a = A[oc + i]
            d0 = D[r0 + i]
            d1 = D[r1 + i]
            d2 = D[r2 + i]
            d3 = D[r3 + i]
            g0 += d0 * a
            g1 += d1 * a
            g2 += d2 * a
            g3 += d3 * a
            x = w0 * d0 + w1 * d1 + w2 * d2 + w3 * d3
            x = _F0 if (last and a <= 0) else x
            D[oc + i] = x
            gb += x
    q = q0
    while True:  # (this loop shape keeps the batch loops above vectorised and cheap to enter)
        if n == 0:
            break
        _sgd(w, wbuf, widx[q], g0, lr, momentum, weight_decay)
        if m > 1:
            _sgd(w, wbuf, widx[q + _U1], g1, lr, momentum, weight_decay)
        if m > 2:
            _sgd(w, wbuf, widx[q + _U2], g2, lr, momentum, weight_decay)
        if m > 3:
            _sgd(w, wbuf, widx[q + _U3], g3, lr, momentum, weight_decay)
        q += m
        if q >= q0 + n:
            break
        m = min(q0 + n - q, _U4)
        last = q + m == q0 + n
        r0 = roff[q]
        w0 = w[widx[q]]
        r1 = roff[q + _U1] if m > 1 else r0
        w1 = w[widx[q + _U1]] if m > 1 else _F0
        r2 = roff[q + _U2] if m > 2 else r0
        w2 = w[widx[q + _U2]] if m > 2 else _F0
        r3 = roff[q + _U3] if m > 3 else r0
        w3 = w[widx[q + _U3]] if m > 3 else _F0
        g0 = _F0
        g1 = _F0
        g2 = _F0
        g3 = _F0
        gb = _F0
        for i in range(B):
            a = A[oc + i]
            d0 = D[r0 + i]
            d1 = D[r1 + i]
            d2 = D[r2 + i]
            d3 = D[r3 + i]
            g0 += d0 * a
            g1 += d1 * a
            g2 += d2 * a
            g3 += d3 * a
            x = D[oc + i] + w0 * d0 + w1 * d1 + w2 * d2 + w3 * d3
            x = _F0 if (last and a <= 0) else x
            D[oc + i] = x
            gb += x
    return gb


@njit(**_INLINE)
def _loss_grad(A, D, oo, Y, yo, B):
    """``D[out] = (sigmoid(z) - y) / B`` for the logits z at ``A[oo:]``; returns its sum."""
    inv_b = _F1 / np.float32(B)
    gb = _F0
    for i in range(B):
        z = A[oo + i]
        s = _F1 / (_F1 + _expf(-z))
        s = z if z != z else s
        d = (s - Y[yo + i]) * inv_b
        D[oo + i] = d
        gb += d
    return gb


@njit(**_INLINE)
def _forward(A, rp, ro, coff, w, b, bo, n_in, U, B):
    """Forward pass of one model (CSR row pointers at ``rp[ro:]``, biases at ``b[bo:]``); inputs in A[:n_in]."""
    for u in range(n_in, U):
        k0 = rp[ro + u]
        _fwd_row(A, u * B, B, b[bo + u], coff, w, k0, rp[ro + u + _U1] - k0, u < U - _U1)


@njit(**_INLINE)
def _backward(A, D, Y, yo, cp, ro, roff, widx, w, wbuf, b, bbuf, bmask, bo, U, B, lr, momentum, weight_decay):
    """Backward pass and SGD step of one model after :func:`_forward` (CSC pointers at ``cp[ro:]``)."""
    oo = (U - _U1) * B
    gb = _loss_grad(A, D, oo, Y, yo, B)
    _sgd(b, bbuf, bo + U - _U1, gb, lr, momentum, weight_decay)
    c = U - _U1
    while c > 0:
        c -= _U1
        q0 = cp[ro + c]
        gb = _col_pass(A, D, c * B, B, roff, widx, w, wbuf, q0, cp[ro + c + _U1] - q0, oo, lr, momentum,
                       weight_decay)
        if bmask[bo + c]:
            _sgd(b, bbuf, bo + c, gb, lr, momentum, weight_decay)


@njit(cache=True)
def _finite(w, k0, k1, b, b0, b1):
    for k in range(k0, k1):
        if not math.isfinite(w[k]):
            return False
    for k in range(b0, b1):
        if not math.isfinite(b[k]):
            return False
    return True



@njit(**_INLINE)
def _in_cone(p, v, kappa):
    """(p, v) lies in the cone {p <= 0, v >= kappa p} that gradient-free SGD steps never leave."""
    return p <= _F0 and v >= kappa * p and (p < np.float32(-1e-30) or (p == _F0 and v >= _F0))


@njit(**_JIT)
def _never_changes(m, U, B, uoff, rpf, coff, w, wbuf, bf, bbf, kappa, hull, eps, dead):
    """Whether model m provably outputs a constant for the rest of training (see :func:`train_masks`).

    Bottom-up over the hidden layers, ``dead[u]`` marks units that output 0 on every training
    point at every later step: a first-layer unit whose pre-activation and momentum-buffer
    pre-activation lie in the cone (with margin ``eps``) at every vertex of the data's convex hull
    ``hull (H, n_in)``; a deeper unit whose bias and every weight from a unit not marked dead lie
    in the cone (its inputs are ReLU outputs >= 0). True when a whole hidden layer is dead.
    """
    mu = np.uint64(m)
    ro = mu * (U + _U1)
    bo = mu * U
    n_layers = len(uoff) - 1
    for u in range(uoff[0], uoff[1]):
        dead[u] = False
    for layer in range(1, n_layers - 1):
        whole = True
        for u in range(uoff[layer], uoff[layer + 1]):
            uu = np.uint64(u)
            k0 = rpf[ro + uu]
            k1 = rpf[ro + uu + _U1]
            bias = bf[bo + uu]
            bv = bbf[bo + uu]
            ok = True
            if layer == 1:
                for h in range(hull.shape[0]):
                    z = bias
                    zv = bv
                    s = abs(bias)
                    sv = abs(bv)
                    for k in range(k0, k1):
                        x = hull[h, coff[k] // B]
                        z += w[k] * x
                        zv += wbuf[k] * x
                        s += abs(w[k] * x)
                        sv += abs(wbuf[k] * x)
                    if not (z <= -eps * s and zv >= kappa * z + eps * sv and (s > _F0 or sv == _F0)):
                        ok = False
                        break
            else:
                ok = _in_cone(bias, bv, kappa)
                k = k0
                while ok and k < k1:
                    if not dead[coff[k] // B]:
                        ok = _in_cone(w[k], wbuf[k], kappa)
                    k += _U1
            dead[u] = ok
            whole = whole and ok
        if whole:
            return True
    return False



@njit(**_JIT)
def _screen(A, Xs, m, U, B, n_in, uoff, rpf, coff, w, bf, first):
    """Cheap necessary test on blocks of points ``Xs (blocks * n_in * B,)``: some hidden layer has
    no unit whose activation varies over the points (every unit zero or one constant)."""
    mu = np.uint64(m)
    n_layers = len(uoff) - 1
    flat = np.ones(n_layers, np.bool_)
    flat[0] = False
    flat[n_layers - 1] = False
    for blk in range(len(Xs) // (n_in * B)):
        xo = blk * n_in * B
        for i in range(n_in * B):
            A[i] = Xs[xo + i]
        _forward(A, rpf, mu * (U + _U1), coff, w, bf, mu * U, n_in, U, B)
        any_flat = False
        for layer in range(1, n_layers - 1):
            if not flat[layer]:
                continue
            for u in range(uoff[layer], uoff[layer + 1]):
                o = np.uint64(u) * B
                if blk == 0:
                    first[u] = A[o]
                ref = first[u]
                for i in range(B):
                    if A[o + i] != ref:
                        flat[layer] = False
                        break
                if not flat[layer]:
                    break
            any_flat = any_flat or flat[layer]
        if not any_flat:
            return False
    return True


@njit(**_INLINE)
def _iv_mul(a1, a2, g1, g2):
    """[a1, a2] * [g1, g2] for g1 >= 0 (g2 may be inf; no 0 * inf)."""
    hi = a2 * g2 if a2 > 0 else a2 * g1
    lo = a1 * g1 if a1 >= 0 else a1 * g2
    return lo, hi


@njit(**_JIT)
def _future_bounds(lr_cols, steps, momentum, weight_decay, n_seg):
    """Per learning-rate column k and epochs done e: the ranges of ``a_t`` and ``g_t = b_t / a_t``
    over ``n_seg`` pieces of the remaining steps, where a gradient-free parameter after t more steps
    is ``a_t p + b_t v`` (p, v now). ``out[k, e, s] = (a_lo, a_hi, g_lo, g_hi)``; ``a_lo <= 0``
    marks a future in which the factor is not positive (no interval test then)."""
    epochs, K = lr_cols.shape
    out = np.zeros((K, epochs + 1, n_seg, 4))
    mom = np.float64(momentum)
    wd = np.float64(weight_decay)
    for k in range(K):
        for e0 in range(epochs + 1):
            T = (epochs - e0) * steps
            ns = min(n_seg, T + 1)
            seg = out[k, e0]
            for q in range(n_seg):
                seg[q, 0] = np.inf
                seg[q, 1] = -np.inf
                seg[q, 2] = np.inf
                seg[q, 3] = -np.inf
            seg[0, 0] = min(seg[0, 0], 1.0)
            seg[0, 1] = max(seg[0, 1], 1.0)
            seg[0, 2] = min(seg[0, 2], 0.0)
            seg[0, 3] = max(seg[0, 3], 0.0)
            p1, v1, p2, v2 = 1.0, 0.0, 0.0, 1.0
            t = 1
            for e in range(e0, epochs):
                eta = np.float64(lr_cols[e, k])
                for _ in range(steps):
                    v1 = mom * v1 + wd * p1
                    p1 = p1 - eta * v1
                    v2 = mom * v2 + wd * p2
                    p2 = p2 - eta * v2
                    q = t * ns // (T + 1)
                    seg[q, 0] = min(seg[q, 0], p1)
                    seg[q, 1] = max(seg[q, 1], p1)
                    g = p2 / p1 if p1 > 0 else 0.0
                    seg[q, 2] = min(seg[q, 2], g)
                    seg[q, 3] = max(seg[q, 3], g)
                    t += 1
            for q in range(ns, n_seg):  # fewer steps than pieces: repeat the last piece
                seg[q] = seg[ns - 1]
    return out


@njit(**_JIT)
def _ibp_constant(m, U, B, uoff, rpf, coff, w, wbuf, bf, bbf, fut, box_lo, box_hi, eps):
    """Whether model m provably outputs one constant for the rest of training (the second test of
    :func:`train_masks`' early exit): interval bounds over data boxes and the shrinking future.

    Gradient-free parameters follow ``p_t = a_t p + b_t v`` (the same a_t, b_t for all, from the
    remaining learning rates), i.e. ``a_t (p + g_t v)`` with ``g_t = b_t / a_t``. A ReLU network
    whose weights and biases all carry the factor ``a > 0`` has normalised activations
    ``g_1 = relu(W1 x + b1)``, ``g_k = relu(a W_k g_(k-1) + b_k)``. Per segment of the future
    (ranges of a and g) and per box of data points, interval arithmetic bounds every unit; a unit
    is DEAD when its pre-activation is <= -eps times its terms' magnitude everywhere, CONST when no
    input varies (its inputs are DEAD or CONST; its value is trained but equal on every point),
    VARY otherwise. A layer without a VARY unit gives a constant output; below it every DEAD and
    VARY unit has delta 0 (VARY units feed only DEAD units of the next layer), so their parameters
    are gradient-free, which the bounds assumed (induction over the steps). A weight from a CONST
    unit (trained value >= 0) must be <= 0 throughout for its DEAD unit.
    """
    n_seg = fut.shape[0]
    a_lo = fut[:, 0]
    a_hi = fut[:, 1]
    g_lo = fut[:, 2]
    g_hi = fut[:, 3]
    for q in range(n_seg):
        if not a_lo[q] > 0:
            return False
    mu = np.uint64(m)
    ro = mu * (U + _U1)
    bo = mu * U
    nb = box_lo.shape[0]
    n_in = box_lo.shape[1]
    st = np.full(U, 2, np.int8)  # 0 DEAD, 1 CONST, 2 VARY
    glo = np.zeros((n_seg, nb, U))
    ghi = np.zeros((n_seg, nb, U))
    for s in range(n_seg):
        for bx in range(nb):
            for j in range(n_in):
                glo[s, bx, j] = box_lo[bx, j]
                ghi[s, bx, j] = box_hi[bx, j]
    for layer in range(1, len(uoff) - 2):
        any_vary = False
        for u in range(uoff[layer], uoff[layer + 1]):
            uu = np.uint64(u)
            k0 = rpf[ro + uu]
            k1 = rpf[ro + uu + _U1]
            has_vary = False
            for k in range(k0, k1):
                if st[coff[k] // B] == 2:
                    has_vary = True
            b0 = np.float64(bf[bo + uu])
            bv = np.float64(bbf[bo + uu])
            dead = True
            for s in range(n_seg):
                bl = min(b0 + g_lo[s] * bv, b0 + g_hi[s] * bv)
                bh = max(b0 + g_lo[s] * bv, b0 + g_hi[s] * bv)
                for bx in range(nb):
                    zl = bl
                    zh = bh
                    mag = max(abs(bl), abs(bh))
                    for k in range(k0, k1):
                        j = coff[k] // B
                        sj = st[j]
                        if sj == 0:
                            continue
                        w0 = np.float64(w[k])
                        wv = np.float64(wbuf[k])
                        wl = min(w0 + g_lo[s] * wv, w0 + g_hi[s] * wv)
                        wh = max(w0 + g_lo[s] * wv, w0 + g_hi[s] * wv)
                        if layer == 1:
                            x1 = glo[s, bx, j]
                            x2 = ghi[s, bx, j]
                            c1 = wl * x1
                            c2 = wl * x2
                            c3 = wh * x1
                            c4 = wh * x2
                            zl += min(min(c1, c2), min(c3, c4))
                            zh += max(max(c1, c2), max(c3, c4))
                            mag += max(abs(wl), abs(wh)) * max(abs(x1), abs(x2))
                        elif sj == 1:
                            if wh > 0:
                                zh = np.inf
                            if wl < 0:
                                zl = -np.inf
                        else:
                            pl, ph = _iv_mul(wl, wh, glo[s, bx, j], ghi[s, bx, j])
                            zl += min(a_lo[s] * pl, a_hi[s] * pl)
                            zh += max(a_lo[s] * ph, a_hi[s] * ph)
                            mag += a_hi[s] * max(abs(wl), abs(wh)) * ghi[s, bx, j]
                    if not zh <= -eps * mag:
                        dead = False
                    glo[s, bx, u] = max(zl, 0.0)
                    ghi[s, bx, u] = max(zh, 0.0)
            if dead:
                st[u] = 0
            elif not has_vary:
                st[u] = 1
            else:
                st[u] = 2
                any_vary = True
        if not any_vary:
            return True
    return False

@njit(**_JIT)
def _train_group(Xf, Yf, lr, models, slot, n_slots, steps, n_in, B, U, rpf, cpf, coff, roff, widx, w, wbuf,
                 bf, bbf, bmf, momentum, weight_decay, active, epochs_run, exit_epoch, uoff, kappa, hull, eps,
                 fut, lr_key, Xs, box_lo, box_hi, next_check, wait):
    """Every epoch of ``lr (epochs, R)`` for the models of one group, one batch at a time for all of them.

    Batches of epoch e, step s of data slot ``slot``: inputs at ``Xf[((e*n_slots + slot)*steps + s)*n_in*B:]``
    as ``(n_in, B)``, labels likewise in ``Yf``. A model that ends an epoch with a non-finite
    parameter is deactivated. (The step code is inlined here, in a plain function: inlined into the
    parallel kernel it would cost numba's parfor passes minutes of compilation.)
    """
    A = np.empty(U * B, np.float32)
    D = np.empty(U * B, np.float32)
    dead = np.zeros(U, np.bool_)
    first = np.zeros(U, np.float32)
    for e in range(lr.shape[0]):
        live = 0
        for m in models:
            if active[m]:
                epochs_run[m] += 1
                live += 1
        if live == 0:
            break
        for s in range(steps):
            batch = (np.uint64(e) * n_slots + slot) * steps + s
            xo = batch * n_in * B
            for i in range(n_in * B):
                A[i] = Xf[xo + i]
            yo = batch * B
            for m in models:
                if not active[m]:
                    continue
                mu = np.uint64(m)
                ro = mu * (U + _U1)
                _forward(A, rpf, ro, coff, w, bf, mu * U, n_in, U, B)
                _backward(A, D, Yf, yo, cpf, ro, roff, widx, w, wbuf, bf, bbf, bmf, mu * U, U, B,
                          lr[e, m], momentum, weight_decay)
        for m in models:
            mu = np.uint64(m)
            ro = mu * (U + _U1)
            if active[m] and not _finite(w, rpf[ro], rpf[ro + U], bf, mu * U, (mu + _U1) * U):
                active[m] = 0
            elif active[m] and kappa[m] > _F0 and epochs_run[m] < fut.shape[1] - 1:
                done = _never_changes(m, U, B, uoff, rpf, coff, w, wbuf, bf, bbf, kappa[m], hull, eps, dead)
                if not done and epochs_run[m] >= next_check[m] and _screen(A, Xs, m, U, B, n_in, uoff, rpf, coff,
                                                                           w, bf, first):
                    done = _ibp_constant(m, U, B, uoff, rpf, coff, w, wbuf, bf, bbf, fut[lr_key[m], epochs_run[m]],
                                         box_lo, box_hi, _IBP_EPS)
                    if not done:  # retry after 1, 2, 4, ... epochs
                        next_check[m] = epochs_run[m] + wait[m]
                        wait[m] *= 2
                if done:
                    active[m] = 0
                    exit_epoch[m] = epochs_run[m]


@njit(parallel=True, **_JIT)
def _train_epochs(Xe, Ye, lr, group_start, group_models, group_slot, rowptr, colptr, coff, roff, widx, w, wbuf,
                  b, bbuf, bmask, momentum, weight_decay, active, epochs_run, exit_epoch, uoff, kappa, hull, eps,
                  fut, lr_key, Xs, box_lo, box_hi, next_check, wait, queue, n_tasks):
    """Several epochs of every active model, a group of models per task (see :func:`_train_group`).

    ``queue``: int64 ``(1,)``, zero: the next group's ticket; ``n_tasks``: one per thread.

    ``Xe (epochs, slots, steps, n_in, B)``, ``Ye (epochs, slots, steps, B)``: each epoch's batches per seed
    slot; ``lr (epochs, R)``. Group g trains models ``group_models[group_start[g]:group_start[g+1]]``
    on slot ``group_slot[g]`` through all the epochs (no barrier between epochs).
    """
    n_slots = np.uint64(Xe.shape[1])
    steps = np.uint64(Ye.shape[2])
    n_in = np.uint64(Xe.shape[3])
    B = np.uint64(Ye.shape[3])
    U = np.uint64(b.shape[1])
    Xf = Xe.ravel()
    Yf = Ye.ravel()
    bf = b.ravel()
    bbf = bbuf.ravel()
    bmf = bmask.ravel()
    rpf = rowptr.ravel()
    cpf = colptr.ravel()
    # a work queue: numba's prange schedules statically (contiguous or round-robin blocks, whatever
    # the chunk size, with the omp and workqueue layers), which balances the groups' costs as
    # estimated up front but not the early exits that shrink them; so one task per thread, and
    # each takes the next group from a shared atomic counter until none is left. Which thread
    # trains a group changes nothing in its numbers.
    n_groups = len(group_slot)
    for _ in prange(n_tasks):
        while True:
            g = _fetch_add(queue, 0, 1)
            if g >= n_groups:
                break
            _train_group(Xf, Yf, lr, group_models[group_start[g]:group_start[g + 1]], np.uint64(group_slot[g]),
                         n_slots, steps, n_in, B, U, rpf, cpf, coff, roff, widx, w, wbuf, bf, bbf, bmf,
                         momentum, weight_decay, active, epochs_run, exit_epoch, uoff, kappa, hull, eps,
                         fut, lr_key, Xs, box_lo, box_hi, next_check, wait)


@njit(parallel=True, cache=True)
def _gather_batches(X, y, perms, Xe, Ye):
    """``Xe[e, s, t, j, i] = X[p, j]``, ``Ye[e, s, t, i] = y[p]`` with ``p = perms[e, s, t*B + i]``."""
    n_epochs, n_slots, steps, n_in, B = Xe.shape
    for k in prange(n_epochs * n_slots):
        e, s = k // n_slots, k % n_slots
        for t in range(steps):
            for i in range(B):
                p = perms[e, s, t * B + i]
                for j in range(n_in):
                    Xe[e, s, t, j, i] = X[p, j]
                Ye[e, s, t, i] = y[p]


@njit(**_JIT)
def _evaluate_model(Xf, Yf, valid, n_blocks, n_in, B, U, mu, rpf, coff, w, bf):
    """(correct predictions, summed BCE) of model ``mu`` over the blocks (see :func:`_evaluate`).

    A prediction is right by the rule whose home is :func:`cubist.train.correct_predictions`
    (``(logit > 0) == target``, a non-finite logit wrong), spelt out here since numba cannot call
    torch. Only a NaN logit is tested (``z == z``): an infinite logit of the right sign counts as
    right here, wrong there; its BCE is not finite, so such a model is reported ``diverged`` anyway.
    """
    A = np.empty(U * B, np.float32)
    ro = mu * (U + _U1)
    oo = (U - _U1) * B
    n_correct = 0
    total = 0.0
    for k in range(n_blocks):
        xo = k * n_in * B
        for i in range(n_in * B):
            A[i] = Xf[xo + i]
        _forward(A, rpf, ro, coff, w, bf, mu * U, n_in, U, B)
        yo = k * B
        nv = np.uint64(valid[k])
        part = _F0
        hits = 0
        for i in range(B):
            z = A[oo + i]
            t = Yf[yo + i]
            ok = i < nv
            part += _bce(z, t) if ok else _F0
            hits += 1 if (ok and z == z and (z > 0) == (t > np.float32(0.5))) else 0
        total += part
        n_correct += hits
    return n_correct, total


@njit(parallel=True, **_JIT)
def _evaluate(Xb, Yb, valid, rowptr, coff, w, b, correct, loss):
    """Accuracy counts and summed BCE of every model over blocks ``Xb (blocks, n_in, B)``.

    ``valid[k]``: how many points of block k are real (the rest is padding). Right and wrong as
    :func:`cubist.train.correct_predictions` (see :func:`_evaluate_model`).
    """
    U = np.uint64(b.shape[1])
    n_blocks = np.uint64(Xb.shape[0])
    n_in = np.uint64(Xb.shape[1])
    B = np.uint64(Xb.shape[2])
    Xf = Xb.ravel()
    Yf = Yb.ravel()
    bf = b.ravel()
    rpf = rowptr.ravel()
    for m in prange(b.shape[0]):
        correct[m], loss[m] = _evaluate_model(Xf, Yf, valid, n_blocks, n_in, B, U, np.uint64(m), rpf, coff, w, bf)


# -- packing -----------------------------------------------------------------------------------
@dataclass
class _Packed:
    """R models in the kernels' sparse layout (see the module docstring)."""

    widths: tuple[int, ...]
    batch: int        # B: the offsets below are unit * B
    rowptr: np.ndarray  # (R, U+1) uint64: model r's weights of unit u are w[rowptr[r,u]:rowptr[r,u+1]]
    colptr: np.ndarray  # (R, U+1) uint64: CSC entries of unit u
    coff: np.ndarray    # (nnz,) uint64: input-unit offset of each weight (CSR order)
    roff: np.ndarray    # (nnz,) uint64: output-unit offset of each CSC entry
    widx: np.ndarray    # (nnz,) uint64: CSR index of each CSC entry
    w: np.ndarray       # (nnz,) float32
    b: np.ndarray       # (R, U) float32, masked biases 0
    bmask: np.ndarray   # (R, U) uint8
    where: list         # per layer: (model, row, column, position in w) of its weights


def _pack(widths, masks, params, batch: int) -> _Packed:
    """Sparse layout of R models: ``masks[l]`` bool (R, out, in), ``params[l] = (W (R,out,in), b (R,out))``."""
    widths = tuple(widths)
    R = masks[0].shape[0]
    U = sum(widths)
    uoff = np.cumsum((0,) + widths)
    parts = []  # per layer: model, unit, input unit, value, layer, row and column in the layer
    for l, m in enumerate(masks):
        r, j, i = np.nonzero(m)
        parts.append((r, uoff[l + 1] + j, uoff[l] + i, params[l][0][r, j, i], np.full(len(r), l), j, i))
    rr, rows, cols, vals, layer, jj, ii = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((cols, rows, rr))  # CSR: by model, then unit, then input unit
    rr, rows, cols, vals, layer, jj, ii = (x[order] for x in (rr, rows, cols, vals, layer, jj, ii))
    where = []
    for l in range(len(masks)):
        pos = np.flatnonzero(layer == l)
        where.append((rr[pos], jj[pos], ii[pos], pos))

    def pointers(unit):
        counts = np.bincount(rr * U + unit, minlength=R * U).reshape(R, U)
        ptr = np.zeros((R, U + 1), np.uint64)
        ptr[:, 1:] = np.cumsum(counts, axis=1)
        ptr += np.concatenate([[0], np.cumsum(counts.sum(axis=1))[:-1]]).astype(np.uint64)[:, None]
        return ptr

    csc = np.lexsort((rows, cols, rr))  # CSC: by model, then input unit, then unit
    bm = bias_masks(masks)
    b = np.zeros((R, U), np.float32)
    bmask = np.zeros((R, U), np.uint8)
    for l, (_, bl) in enumerate(params):
        b[:, uoff[l + 1]:uoff[l + 2]] = np.where(bm[l], bl, 0)
        bmask[:, uoff[l + 1]:uoff[l + 2]] = bm[l]
    B = np.uint64(batch)
    return _Packed(widths, batch, pointers(rows), pointers(cols), cols.astype(np.uint64) * B,
                   rows[csc].astype(np.uint64) * B, csc.astype(np.uint64), np.ascontiguousarray(vals, np.float32),
                   b, bmask, where)


def _unpack(p: _Packed) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W (R, out, in), b (R, out))] of the packed models (masked entries exactly 0)."""
    R = p.b.shape[0]
    uoff = np.cumsum((0,) + p.widths)
    out = []
    for l in range(len(p.widths) - 1):
        W = np.zeros((R, p.widths[l + 1], p.widths[l]), np.float32)
        r, j, i, pos = p.where[l]
        W[r, j, i] = p.w[pos]
        out.append((W, p.b[:, uoff[l + 1]:uoff[l + 2]].copy()))
    return out


def _blocks(X, y, block: int):
    """X, y cut into (blocks, n_in, block) / (blocks, block) padded with zeros, and the valid counts."""
    n, n_in = X.shape
    nb = max(1, -(-n // block))
    Xb = np.zeros((nb * block, n_in), np.float32)
    Yb = np.zeros(nb * block, np.float32)
    Xb[:n], Yb[:n] = X, y
    valid = np.clip(n - np.arange(nb) * block, 0, block).astype(np.int64)
    return (np.ascontiguousarray(Xb.reshape(nb, block, n_in).transpose(0, 2, 1)),
            Yb.reshape(nb, block), valid)


# -- API ---------------------------------------------------------------------------------------
@dataclass
class EngineResult:
    """Per-model outcome of :func:`train_masks` (arrays of length R, in the order of the masks)."""

    train_acc: np.ndarray      # float64: fraction of training points with (logit > 0) == label
    final_loss: np.ndarray     # float64: mean BCE over the training set after training
    diverged: np.ndarray       # bool
    epochs_run: np.ndarray     # int64
    heldout_acc: np.ndarray | None
    weights: list              # [(W (R, out, in), b (R, out))] float32, masked entries 0
    wall_time_s: float
    exit_epoch: np.ndarray | None = None  # int64: epoch of an exact early exit, 0 for none

    def __len__(self) -> int:
        return len(self.train_acc)

    def params(self, r: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W, b), ...] of model r."""
        return [(W[r], b[r]) for W, b in self.weights]


def _per_model(value, R: int, name: str, kind):
    if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
        return [kind(value)] * R
    values = [kind(v) for v in value]
    if len(values) != R:
        raise ValueError(f"{name} has {len(values)} entries for {R} models")
    return values


def _initial_params(widths, R, seeds, init, init_width):
    """Per-layer (W (R, out, in), b (R, out)) float32 before masking."""
    out = [(np.empty((R, widths[l + 1], widths[l]), np.float32), np.empty((R, widths[l + 1]), np.float32))
           for l in range(len(widths) - 1)]
    if init is None:
        by_seed = {}
        for r, s in enumerate(seeds):
            by_seed.setdefault(s, []).append(r)
        for s, rs in by_seed.items():
            for l, (w, b) in enumerate(init_weights(widths, init_width, s)):
                out[l][0][rs] = w.numpy()
                out[l][1][rs] = b.numpy()
        return out
    if len(init) != len(widths) - 1:
        raise ValueError(f"init has {len(init)} layers, widths {widths} need {len(widths) - 1}")
    for l, (w, b) in enumerate(init):
        w, b = np.asarray(w, np.float32), np.asarray(b, np.float32)
        o, i = widths[l + 1], widths[l]
        if w.shape[-2] < o or w.shape[-1] < i or b.shape[-1] < o or w.ndim not in (2, 3) or b.ndim != w.ndim - 1:
            raise ValueError(f"init layer {l}: shapes {w.shape}, {b.shape} do not cover ({o}, {i})")
        if w.ndim == 3 and (w.shape[0] != R or b.shape[0] != R):
            raise ValueError(f"init layer {l} has {w.shape[0]} models, expected {R}")
        out[l][0][:] = w[..., :o, :i]
        out[l][1][:] = b[..., :o]
    return out


_EXIT_EPS = np.float32(2.0 ** -10)  # margin of the first-layer cone, relative to the terms' magnitudes
_EXIT_SLACK = 0.9                   # kappa at this fraction of its valid interval (relative slack)


def cone_kappa(lr_max: float, momentum: float, weight_decay: float) -> float:
    """The cone slope kappa of the early exit (see :func:`train_masks`), or 0 when none exists."""
    a, b, c = momentum * lr_max, 1 - momentum - weight_decay * lr_max, weight_decay
    if b <= 0:
        return 0.0
    if a == 0:
        return 2 * c / b + 1.0 if c > 0 else 1.0
    disc = b * b - 4 * a * c
    if disc <= 0:
        return 0.0
    lo, hi = (b - math.sqrt(disc)) / (2 * a), (b + math.sqrt(disc)) / (2 * a)
    kappa = lo + _EXIT_SLACK * (hi - lo)
    return kappa if lr_max * (momentum * kappa + weight_decay) < 1 else 0.0


def _data_hull(X):
    """Vertices of the convex hull of the points (all points when there is no 2-D/3-D hull)."""
    if X.shape[1] in (2, 3) and len(X) > X.shape[1] + 1:
        from scipy.spatial import ConvexHull, QhullError
        try:
            return np.ascontiguousarray(X[ConvexHull(X.astype(np.float64)).vertices], np.float32)
        except QhullError:
            pass
    return np.ascontiguousarray(np.unique(X, axis=0), np.float32)


_IBP_EPS = 2.0 ** -6      # margin of the interval test, relative to the terms' magnitudes (float32 drift)
_IBP_SEGMENTS = 4         # pieces of the remaining training the interval test bounds separately
_SCREEN_BLOCKS = 8        # blocks of B points the screen evaluates (spread over every scored point)
_IBP_BOX = 512            # consecutive data points per box of the interval test


def _exit_setup(lrs, momentum, weight_decay, X, y, X_heldout, y_heldout, batch_size: int, early_exit: bool):
    """What the early-exit tests read, on every point the final accuracies score (training and
    held-out): per-model cone slopes kappa (0: no early exit), the points' hull vertices, the
    screening blocks (``_SCREEN_BLOCKS`` x ``batch_size`` points spread over them, ``(blocks * n_in
    * B,)``) and the boxes of the interval test (min and max of each run of ``_IBP_BOX``
    consecutive points of the training and of the held-out set)."""
    n_in = X.shape[1]
    if not early_exit:
        z = np.zeros((1, n_in), np.float32)
        return np.zeros(len(lrs), np.float32), z, np.zeros(n_in * batch_size, np.float32), z, z
    for labels, name in ((y, "training"), (y_heldout, "held-out")):
        if labels is not None and np.count_nonzero(labels > 0.5) * 2 != len(labels):
            raise ValueError(f"early exit is exact only on class-balanced data; the {name} set is not")
    kappa = np.array([cone_kappa(lr, momentum, weight_decay) for lr in lrs], np.float32)
    return (kappa, *_exit_data(X, X_heldout, batch_size))


@functools.lru_cache(maxsize=128)   # at most 128 x n int64 (51 MB for the spiral)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """``cubist.train.epoch_permutation(seed, epoch, n)``, remembered: consecutive chunks of a search
    train models of the same seeds, so the same data orders (the engine only reads them)."""
    return epoch_permutation(seed, epoch, n)


_EXIT_DATA: dict = {}   # digest of the points -> what _exit_data derives from them (the kernels only read it)


def _exit_data(X, X_heldout, batch_size: int):
    """The data's part of :func:`_exit_setup` (hull, screen, boxes), computed once per data set and
    batch size in a process (a search trains chunk after chunk on one data set; a ConvexHull of
    the spiral's 60,000 points costs more than training a small chunk for an epoch)."""
    import hashlib
    parts = [np.ascontiguousarray(X, np.float32)]
    if X_heldout is not None:
        parts.append(np.ascontiguousarray(X_heldout, np.float32))
    h = hashlib.blake2b(digest_size=16)
    for P in parts:
        h.update(repr(P.shape).encode())
        h.update(P.tobytes())
    key = (h.hexdigest(), int(batch_size))
    if key not in _EXIT_DATA:
        n_in = parts[0].shape[1]
        scored = np.concatenate(parts)
        idx = np.linspace(0, len(scored) - 1, _SCREEN_BLOCKS * batch_size).astype(np.int64)
        screen = np.ascontiguousarray(scored[idx].reshape(_SCREEN_BLOCKS, batch_size, n_in).transpose(0, 2, 1)
                                      .reshape(-1))
        runs = [P[k:k + _IBP_BOX] for P in parts for k in range(0, len(P), _IBP_BOX)]
        box_lo = np.stack([r.min(axis=0) for r in runs]).astype(np.float32)
        box_hi = np.stack([r.max(axis=0) for r in runs]).astype(np.float32)
        if len(_EXIT_DATA) >= 8:
            _EXIT_DATA.pop(next(iter(_EXIT_DATA)))
        _EXIT_DATA[key] = (_data_hull(scored), screen, box_lo, box_hi)
    return _EXIT_DATA[key]


def _groups(seed_slot: np.ndarray, models: np.ndarray, cost: np.ndarray, group_size: int):
    """Cut models (sharing a data slot within a group) into groups, costliest first."""
    groups = []
    for slot in np.unique(seed_slot[models]):
        ms = models[seed_slot[models] == slot]
        ms = ms[np.argsort(-cost[ms], kind="stable")]  # similar costs together
        for k in range(0, len(ms), group_size):
            groups.append((slot, ms[k:k + group_size]))
    groups.sort(key=lambda g: -cost[g[1]].sum())
    start = np.zeros(len(groups) + 1, np.int64)
    start[1:] = np.cumsum([len(g[1]) for g in groups])
    flat = np.concatenate([g[1] for g in groups]).astype(np.int64) if groups else np.zeros(0, np.int64)
    return start, flat, np.array([g[0] for g in groups], np.int64)


def train_masks(X, y, widths, masks, *, lrs, schedules, seeds, epochs: int = 50, batch_size: int = 128,
                momentum: float = 0.9, weight_decay: float = 5e-4, init=None, init_width: int | None = 16,
                X_heldout=None, y_heldout=None, threads: int | None = None, progress=None,
                group_size: int = 16, init_seeds=None, early_exit: bool = False) -> EngineResult:
    """Train R masked MLPs ``widths[0] -> ... -> 1`` by the paper's protocol (see the module docstring).

    ``masks``: per layer a bool array ``(R, out, in)`` (or ``(out, in)``, shared by all models).
    ``lrs``, ``schedules`` (cosine | step | constant), ``seeds``: one value or one per model.
    ``init``: a fixed ``[(W, b), ...]`` (2-D, shared; or 3-D, per model; sliced to ``widths``)
    instead of ``init_weights(widths, init_width, seed)``. ``threads``: numba threads (default all).
    ``progress``: None, True (a tqdm bar) or ``callable(epochs_done, epochs_total)``, called every
    (up to 10) epochs of each block of seeds (``epochs_total`` = epochs x blocks).
    ``group_size``: most models a thread trains in lockstep on one batch.
    ``init_seeds``: per model, the seed its init is drawn from (default: ``seeds``, which always
    give the data order); the search gives every run its own (:func:`cubist.model.run_init_seed`).

    ``early_exit``: stop a model as soon as it provably outputs one constant for the rest of
    training, and record the accuracy that full training ends with (``exit_epoch`` > 0). Exact, by
    this argument. While a hidden unit outputs 0 on every point of a batch, its delta is 0, so its
    incoming weights and bias get gradient exactly 0 and move by weight decay and momentum alone:
    ``v' = mu v + wd p; p' = p - lr v'``, one linear map for every such parameter. Two tests run at
    the end of an epoch, both on every point the final accuracies score (training and held-out):

    1. the cone (float-exact): for ``lr <= lr_max`` (no schedule exceeds its base rate) the cone
       ``{p <= 0, v >= kappa p}`` is invariant under that map whenever ``mu lr_max kappa^2 - (1 - mu -
       wd lr_max) kappa + wd <= 0`` (expand ``v'`` and ``p'``; the left side grows with lr); ``kappa``
       lies strictly inside that interval, so the relative slack absorbs float32 rounding (every
       operation rounds monotonically, relative error 2^-24). A deeper unit (inputs: ReLU outputs
       >= 0) whose bias and weights from live units lie in the cone has a pre-activation that is a
       float sum of non-positive terms at every later step: dead for good. A first-layer unit's
       pre-activation ``z(x)`` and the same affine function ``zv(x)`` of its buffers move by the same
       map, so the per-point cone is invariant too; both are affine in ``x``, so it holds on the
       points when it holds, with margin, on the vertices of their convex hull.
    2. the interval test (:func:`_ibp_constant`, after a cheap screen on one block of points, retried
       after 1, 2, 4, ... epochs): gradient-free parameters are ``a_t (p + g_t v)`` with ``a_t > 0``
       and ``g_t`` common to all (computed from the remaining learning rates), so the network below a
       layer without a varying unit is one shape shrinking jointly; interval bounds over boxes of
       points and pieces of the future prove units DEAD (pre-activation <= -2^-6 times the magnitude
       of its terms: float32 drift of a parameter from the exact linear trajectory stays below that
       over 50 epochs, about steps x 2^-24 x a small condition number) or CONST (no varying input).

    Once some hidden layer has no varying unit, the logit is one finite number for every point, so
    the accuracy is the share of the class it predicts, on class-balanced data (required: n0 == n1,
    also for the held-out set) exactly 0.5 whatever the upper layers still learn. A model that
    exits keeps the weights and the loss of its exit epoch (``epochs_run`` = exit epoch); accuracy
    and ``diverged`` are those of full training. (The upper layers of such a model train a scalar
    with bounded gradients; that they do not diverge within the run is the one fact the argument
    takes from measurement: tests compare thousands of runs with early exit on and off.)
    """
    t0 = time.perf_counter()
    widths = check_widths(widths)
    if widths[-1] != 1:
        raise ValueError(f"the engine trains one-logit MLPs; widths end in {widths[-1]}")
    L = len(widths) - 1
    masks = [np.asarray(m) != 0 for m in masks]
    if len(masks) != L:
        raise ValueError(f"expected {L} layer masks for widths {widths}, got {len(masks)}")
    R = next((m.shape[0] for m in masks if m.ndim == 3), None)
    if R is None:
        R = next((len(v) for v in (lrs, seeds) if np.ndim(v) == 1), None)
        if R is None and not isinstance(schedules, str):
            R = len(schedules)
        R = 1 if R is None else R
    for l, m in enumerate(masks):
        shape = (widths[l + 1], widths[l])
        if m.shape[-2:] != shape or m.ndim not in (2, 3) or (m.ndim == 3 and m.shape[0] != R):
            raise ValueError(f"mask {l} has shape {m.shape}, expected ({R}, {shape[0]}, {shape[1]})")
        masks[l] = np.broadcast_to(m, (R,) + shape)
    lrs = _per_model(lrs, R, "lrs", float)
    schedules = _per_model(schedules, R, "schedules", str)
    seeds = _per_model(seeds, R, "seeds", int)
    for lr in lrs:
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"learning rates must be positive, got {lr}")
    for s in schedules:
        if s not in SCHEDULES:
            raise ValueError(f"unknown schedule {s!r}; choose from {', '.join(SCHEDULES)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    X = np.ascontiguousarray(X, np.float32)
    y = np.ascontiguousarray(y, np.float32).reshape(-1)
    if X.ndim != 2 or X.shape[1] != widths[0] or len(y) != len(X):
        raise ValueError(f"X must be (n, {widths[0]}) with n labels; got {X.shape} and {y.shape}")
    n = len(X)
    steps = n // batch_size
    if steps < 1:
        raise ValueError(f"{n} points are fewer than one batch of {batch_size}")
    if (X_heldout is None) != (y_heldout is None):
        raise ValueError("give both X_heldout and y_heldout, or neither")

    init_seeds = seeds if init_seeds is None else _per_model(init_seeds, R, "init_seeds", int)
    params = _initial_params(widths, R, init_seeds, init, init_width)
    packed = _pack(widths, masks, params, batch_size)
    wbuf = np.zeros_like(packed.w)
    bbuf = np.zeros_like(packed.b)
    active = np.ones(R, np.uint8)
    epochs_run = np.zeros(R, np.int64)
    exit_epoch = np.zeros(R, np.int64)
    kappa, hull, screen, box_lo, box_hi = _exit_setup(lrs, momentum, weight_decay, X, y, X_heldout, y_heldout,
                                                      batch_size, early_exit)
    uoff = np.cumsum((0,) + widths).astype(np.int64)
    next_check = np.ones(R, np.int64)
    wait = np.ones(R, np.int64)
    nnz = np.diff(packed.rowptr[:, [0, -1]], axis=1).ravel().astype(np.float64)
    cost = nnz + sum(widths)  # per-step work of a model, roughly

    uniq_seeds, seed_slot = np.unique(np.asarray(seeds, np.int64), return_inverse=True)
    per_epoch = steps * batch_size * (widths[0] + 1) * 4  # bytes of one seed's batches of one epoch
    seeds_per_block = max(1, _MAX_DATA_BYTES // per_epoch)
    n_threads = numba.config.NUMBA_NUM_THREADS if threads is None else int(threads)
    if not 1 <= n_threads <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"threads must be in 1..{numba.config.NUMBA_NUM_THREADS}, got {threads}")
    lr_keys = sorted(set(zip(schedules, lrs)))
    lr_index = np.array([lr_keys.index(k) for k in zip(schedules, lrs)], np.int64)
    lr_cols = np.array([[lr_at(s, lr, e, epochs) for s, lr in lr_keys] for e in range(epochs)], np.float32)
    lr_table = lr_cols[:, lr_index]  # (epochs, R)
    fut = (_future_bounds(lr_cols, steps, np.float32(momentum), np.float32(weight_decay), _IBP_SEGMENTS)
           if early_exit else np.ones((len(lr_keys), epochs + 1, 1, 4)))

    bar, report = None, None
    n_blocks = -(-len(uniq_seeds) // seeds_per_block)
    total_epochs = epochs * n_blocks
    if progress is True:
        from tqdm.auto import tqdm
        bar = tqdm(total=total_epochs, desc=f"train {R} masks", unit="epoch")
    elif callable(progress):
        report = progress

    old_threads, old_chunk = numba.get_num_threads(), numba.get_parallel_chunksize()
    numba.set_num_threads(n_threads)
    numba.set_parallel_chunksize(1)  # for the evaluation and gathering loops (training: its own queue)
    done = 0
    try:
        for first in range(0, len(uniq_seeds), seeds_per_block):
            block = np.arange(first, min(first + seeds_per_block, len(uniq_seeds)))
            models = np.flatnonzero(np.isin(seed_slot, block))
            g = max(1, min(group_size, -(-len(models) // (4 * n_threads))))
            start, flat, slot = _groups(seed_slot - first, models, cost, g)
            # as many epochs per kernel call as the data budget allows (threads meet once per call);
            # at most 10 when progress is reported
            per_call = max(1, min(epochs if bar is None and report is None else 10,
                                  _MAX_DATA_BYTES // (per_epoch * len(block))))
            for e0 in range(0, epochs, per_call):
                es = range(e0, min(e0 + per_call, epochs))
                perms = np.stack([np.stack([_permutation(int(uniq_seeds[s]), e, n)[:steps * batch_size]
                                            for s in block]) for e in es])
                Xe = np.empty((len(es), len(block), steps, widths[0], batch_size), np.float32)
                Ye = np.empty((len(es), len(block), steps, batch_size), np.float32)
                _gather_batches(X, y, perms, Xe, Ye)
                # contiguous: numba compiles one kernel per array layout, and a slice's layout varies
                _train_epochs(Xe, Ye, np.ascontiguousarray(lr_table[e0:e0 + len(es)]), start, flat, slot, packed.rowptr, packed.colptr,
                              packed.coff, packed.roff, packed.widx, packed.w, wbuf, packed.b, bbuf, packed.bmask,
                              np.float32(momentum), np.float32(weight_decay), active, epochs_run, exit_epoch,
                              uoff, kappa, hull, _EXIT_EPS, fut, lr_index, screen, box_lo, box_hi, next_check,
                              wait, np.zeros(1, np.int64), n_threads)
                done += len(es)
                if bar is not None:
                    bar.update(len(es))
                if report is not None:
                    report(done, total_epochs)
                if not active[models].any():
                    break
        correct = np.zeros(R, np.int64)
        loss = np.zeros(R, np.float64)
        _evaluate(*_blocks(X, y, batch_size), packed.rowptr, packed.coff, packed.w, packed.b, correct, loss)
        heldout = None
        if X_heldout is not None:
            Xh = np.ascontiguousarray(X_heldout, np.float32)
            yh = np.ascontiguousarray(y_heldout, np.float32).reshape(-1)
            if Xh.ndim != 2 or Xh.shape[1] != widths[0] or len(yh) != len(Xh) or len(Xh) == 0:
                raise ValueError(f"X_heldout must be (m > 0, {widths[0]}) with m labels")
            hc = np.zeros(R, np.int64)
            _evaluate(*_blocks(Xh, yh, batch_size), packed.rowptr, packed.coff, packed.w, packed.b,
                      hc, np.zeros(R, np.float64))
            heldout = hc / len(Xh)
    finally:
        numba.set_num_threads(old_threads)
        numba.set_parallel_chunksize(old_chunk)
        if bar is not None:
            bar.close()
    final_loss = loss / n
    diverged = ((active == 0) & (exit_epoch == 0)) | ~np.isfinite(final_loss)
    return EngineResult(correct / n, final_loss, diverged, epochs_run, heldout, _unpack(packed),
                        time.perf_counter() - t0, exit_epoch)
