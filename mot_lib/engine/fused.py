"""The MoT's and the single transformer's training steps as fused kernels (numba): one loop nest per step, per seed
and sample in order.

``grads.mot_step`` writes the step in torch ops; on a CPU a step of the book's sizes (d = 16, L = 8, n = 1000
samples, 8 seeds) is then many small products and passes over (seeds x samples x tokens x d) temporaries, and the
engine ran at about 4x the per-expert loop of ``make bench``.  Here each sample's forward and backward pass is one
loop nest over its 8 x 16 tokens, compiled once per machine (numba caches it under ``__pycache__``):

* ``_frozen``: Stages I and III (and Stage II of the attention-free MoE): attention frozen, the routed experts'
  token weights read from every expert's cache (``_weights_all``) or uniform; the gradients in W and in Theta;
* ``_live``: Stage II and the joint schedule: the routed expert's attention computed live from its W_KQ; the
  gradients in W_KQ (through the softmax rows), in W (joint) and in Theta;
* ``_single``: the single H-head transformer (``single_step``): each head's scores, neurons and output, then its
  gradients in W and W_KQ.

The MoT's two first route a seed's samples together (``_route_seed``: the gate's scores as one product, top-1 of h +
lam r with the exploration draws r taken from each seed's own torch stream, as ``models.route``, and the gate's
softmax), then run each sample's pass, and add Theta's gradient as one product over the samples at the end; they
return the outputs F, the routing, the scores and the token weights; the loss is ``models.logistic_loss`` of the
margins, in torch. ``forward`` is the same pass without gradients (the records). Every product goes through
``_add_product``, which holds eight columns of its output in registers, and the kernels are compiled with LLVM's SLP
vectorizer on (``_run``), which turns those eight into vector instructions.

**Numerics.** Every sum runs in a fixed order (seed by seed, sample by sample, token by token; the seeds run in
parallel only when more than one thread is asked for, each writing its own rows), with IEEE additions and
multiplications only: no fast-math, no fused multiply-add (LLVM contracts none without fast-math flags), so the
compiled code gives the same bits whatever instructions the CPU offers and whatever the compiler vectorizes
(``tests/test_fused.py`` compiles it for the generic x86-64, for Haswell and for this CPU, and compares; the
vectorizers pack the same operations on neighbouring elements and reorder no sum). The exponentials (the gate's and
the attention's softmax, the logistic slope) use ``det_exp``, fdlibm's exp written out in those operations, not the
platform's libm (glibc picks an FMA variant by CPU). The numbers differ from ``grads.mot_step``'s at rounding level
(1e-16 relative per step; other orders of summation), which is why adopting this engine moved the book's MoT numbers
once (issue 19; the notebooks were re-executed and the replication rerun), and the single transformer's with its
kernel (``grads.single_step``'s torch products sum in MKL's order; data/README.md says what moved).

Not covered, and left to ``grads.mot_step``: J-neuron experts, a shared key-query matrix.
"""
from __future__ import annotations

import math
import threading

import numba as nb
import numpy as np
import torch

from .grads import _pool_scale as grads_pool_scale
from .models import logistic_loss

#: activation codes of the kernels
ACTIVATIONS = {"cubic": 0, "linear": 1, "relu": 2}

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
_O_THRESHOLD = 7.09782712893383973096e+02
_U_THRESHOLD = -7.45133219101941108420e+02
_KW = dict(cache=True, error_model="numpy", fastmath=False, nogil=True)


@nb.njit(**_KW)
def det_exp(x):
    """exp(x) within 1 ulp, by fdlibm's algorithm (argument reduction by ln 2, a degree-5 rational remainder)
    in IEEE additions, multiplications and divisions only: the same bits on every x86-64 CPU."""
    if x != x:
        return x
    if x > _O_THRESHOLD:
        return math.inf
    if x < _U_THRESHOLD:
        return 0.0
    ax = abs(x)
    k = 0
    hi = x
    lo = 0.0
    if ax > 0.34657359027997264:            # |x| > ln2 / 2: x = k ln2 + r, |r| <= ln2 / 2
        if ax < 1.0397207708399179:         # |x| < 3 ln2 / 2: k = +-1
            if x > 0:
                hi, lo, k = x - _LN2_HI, _LN2_LO, 1
            else:
                hi, lo, k = x + _LN2_HI, -_LN2_LO, -1
        else:
            k = int(_INV_LN2 * x + (0.5 if x > 0 else -0.5))
            hi = x - k * _LN2_HI
            lo = k * _LN2_LO
        x = hi - lo
    elif ax < 3.725290298461914e-09:        # |x| < 2^-28
        return 1.0 + x
    t = x * x
    c = x - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
    if k == 0:
        return 1.0 - ((x * c) / (c - 2.0) - x)
    y = 1.0 - ((lo - (x * c) / (2.0 - c)) - hi)
    return math.ldexp(y, k)


#: 2^k for k = -1075 .. 1023 (2^-1075 rounds to 0): ``_exp_shifted``'s scaling, a table lookup rather than a call
_POW2 = np.ldexp(1.0, np.arange(-1075, 1024)).astype(np.float64)


@nb.njit(**_KW)
def _exp_shifted(v, top):
    """v[k] <- exp(v[k] - top) for arguments <= 0 (a softmax row shifted by its maximum), ``det_exp``'s algorithm
    without branches (so the compiler may run the row as vectors): within 1 ulp of exp, and the same bits as
    ``det_exp`` (tested) from -744 (where exp falls below 2^-1073; below, 0 or 2^-1074) to -2^-28 (where
    ``det_exp`` returns 1 + x)."""
    for k in range(v.shape[0]):
        x = max(v[k] - top, -745.0)
        j = int(x * _INV_LN2 - 0.5)
        hi = x - j * _LN2_HI
        lo = j * _LN2_LO
        r = hi - lo
        t = r * r
        c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
        v[k] = (1.0 - ((lo - (r * c) / (2.0 - c)) - hi)) * _POW2[j + 1075]


@nb.njit(**_KW)
def _act(z, act):
    """sigma(z) and sigma'(z) for the activation code (relu'(0) = 0, as autograd)."""
    if act == 0:
        return z * z * z, 3.0 * z * z
    if act == 1:
        return z, 1.0
    if z > 0:
        return z, 1.0
    return 0.0, 0.0


@nb.njit(**_KW)
def _slope(y, F, n):
    """d/dF of log(1 + exp(-y F)) / n: -y sigmoid(-y F) / n."""
    return -y / (1.0 + det_exp(y * F)) / n


@nb.njit(**_KW)
def _add_product(out, a, b):
    """out += a b: out[i, f] += a[i, 0] b[0, f], then + a[i, 1] b[1, f], ..., each element summed over the inner
    index in order from its own value.  Eight columns of a row are held in registers over the whole sum (the columns
    past the last eight one at a time), so that the compiler's straight-line vectorizer runs them as vectors: the
    same operations on each element, in the same order, as one element at a time (the same bits), without a store
    and a reload per term."""
    I, K = a.shape
    Fn = b.shape[1]
    F8 = Fn - Fn % 8
    for i in range(I):
        for f in range(0, F8, 8):
            s0, s1, s2, s3 = out[i, f], out[i, f + 1], out[i, f + 2], out[i, f + 3]
            s4, s5, s6, s7 = out[i, f + 4], out[i, f + 5], out[i, f + 6], out[i, f + 7]
            for k in range(K):
                c = a[i, k]
                s0 += c * b[k, f]
                s1 += c * b[k, f + 1]
                s2 += c * b[k, f + 2]
                s3 += c * b[k, f + 3]
                s4 += c * b[k, f + 4]
                s5 += c * b[k, f + 5]
                s6 += c * b[k, f + 6]
                s7 += c * b[k, f + 7]
            out[i, f], out[i, f + 1], out[i, f + 2], out[i, f + 3] = s0, s1, s2, s3
            out[i, f + 4], out[i, f + 5], out[i, f + 6], out[i, f + 7] = s4, s5, s6, s7
        for f in range(F8, Fn):
            s0 = out[i, f]
            for k in range(K):
                s0 += a[i, k] * b[k, f]
            out[i, f] = s0


@nb.njit(**_KW)
def _route_seed(xsum, thetaT, r, lam, h, idx, P):
    """One seed's routing of all its n samples, as ``models.route``: the gate's scores h = xsum Theta^T (n,M), each
    summed over e in order; the top-1 expert idx (n,) of h + lam r (the first of equal maxima, as torch.argmax;
    lam = 0: no exploration); and the gate's softmax over experts P (n,M) (each row shifted by its maximum, its
    exponentials summed over the experts in order)."""
    n, M = h.shape
    for i in range(n):
        for j in range(M):
            h[i, j] = 0.0
    _add_product(h, xsum, thetaT)
    for i in range(n):
        best, m = h[i, 0] + r[i, 0] * lam if lam > 0 else h[i, 0], 0
        top = h[i, 0]
        for j in range(1, M):
            v = h[i, j] + r[i, j] * lam if lam > 0 else h[i, j]
            if v > best:
                best, m = v, j
            top = max(top, h[i, j])
        idx[i] = m
        for j in range(M):
            P[i, j] = h[i, j] - top
    _exp_shifted(P.reshape(n * M), 0.0)     # exp(h - top - 0): the shift is exact, so the same bits as per row
    for i in range(n):
        total = 0.0
        for j in range(M):
            total += P[i, j]
        for j in range(M):
            P[i, j] /= total


@nb.njit(inline="always", **_KW)
def _router_coef(CT, P, i, m, c):
    """Sample i's coefficients in Theta's gradient, c (1{j = m} - p_j) with c = dloss/dF * F, into column i of CT
    (M,n); Theta's gradient is then CT xsum, summed over the samples in order."""
    for j in range(CT.shape[0]):
        CT[j, i] = -c * P[i, j]
    CT[m, i] += c


def _frozen(X, xsum, y, W, thetaT, ac, r, lam, act, want_W, want_theta, idx, H, F, aout, GW, Gth):
    S, n, L, d = X.shape
    M = thetaT.shape[2]
    per_expert = ac.shape[1] > 1
    for s in nb.prange(S):
        z = np.empty(L)
        cv = np.empty((1, L))
        P = np.empty(n * M).reshape((n, M))
        CT = np.empty((M, n))
        _route_seed(xsum[s], thetaT[s], r[s], lam, H[s], idx[s], P)
        for i in range(n):
            m = idx[s, i]
            a = ac[s, m if per_expert else 0, i]
            x = X[s, i]
            w = W[s, m, 0]
            for k in range(L):
                aout[s, i, k] = a[k]
                # z_k = sum_e w_e x_ke, in e order, from the token's own row: this kernel reads X only, not the
                # tokens as columns too (half the data through the cache)
                acc = 0.0
                for e in range(d):
                    acc += w[e] * x[k, e]
                z[k] = acc
            f = 0.0
            for k in range(L):
                phi, dphi = _act(z[k], act)
                z[k] = dphi
                f += a[k] * phi
            pi = P[i, m]
            Fi = pi * f
            F[s, i] = Fi
            gF = _slope(y[s, i], Fi, n)
            if want_W:
                gf = gF * pi
                for k in range(L):
                    cv[0, k] = gf * a[k] * z[k]
                _add_product(GW[s, m], cv, x)   # g_e += sum_k c_k x_ke, in k order
            if want_theta:
                _router_coef(CT, P, i, m, gF * Fi)
        if want_theta:
            _add_product(Gth[s], CT, xsum[s])


@nb.njit(**_KW)
def _scores(x, xt, Wk, XW, A):
    """A[q] = softmax_k(x_q^T W_KQ x_k) for one sample: XW = x W_KQ, then A[q] = XW[q] x^T, rows shifted by their
    maxima."""
    XW[:] = 0.0
    A[:] = 0.0
    _add_product(XW, x, Wk)
    _add_product(A, XW, xt)
    L = x.shape[0]
    for q in range(L):
        top = A[q, 0]
        for k in range(1, L):
            top = max(top, A[q, k])
        _exp_shifted(A[q], top)
        norm = 0.0
        for k in range(L):
            norm += A[q, k]
        for k in range(L):
            A[q, k] /= norm


def _live(X, XT, xsum, y, W, WKQ, thetaT, r, lam, act, scale, want_W, want_KQ, want_theta, idx, H, F, aout, GW, GKQ,
          Gth):
    S, n, L, d = X.shape
    M = thetaT.shape[2]
    for s in nb.prange(S):
        XW = np.empty((L, d))
        A = np.empty((L, L))
        T = np.empty((L, d))
        phi2 = np.empty((1, L))
        cv = np.empty((1, L))
        phi = phi2[0]
        dz = np.empty(L)
        a = np.empty(L)
        ga = np.empty(L)
        P = np.empty(n * M).reshape((n, M))
        CT = np.empty((M, n))
        _route_seed(xsum[s], thetaT[s], r[s], lam, H[s], idx[s], P)
        for i in range(n):
            m = idx[s, i]
            x = X[s, i]
            xt = XT[s, i]
            for k in range(L):
                phi[k] = 0.0
                a[k] = 0.0
            _add_product(phi2, W[s, m], xt)
            for k in range(L):
                phi[k], dz[k] = _act(phi[k], act)
            _scores(x, xt, WKQ[s, m], XW, A)
            for q in range(L):
                for k in range(L):
                    a[k] += A[q, k]
            fsum = 0.0
            for k in range(L):
                aout[s, i, k] = scale * a[k]
                fsum += scale * a[k] * phi[k]
            pi = P[i, m]
            Fi = pi * fsum
            F[s, i] = Fi
            gF = _slope(y[s, i], Fi, n)
            gf = gF * pi
            if want_W:
                for k in range(L):
                    cv[0, k] = gf * scale * a[k] * dz[k]
                _add_product(GW[s, m], cv, x)
            if want_theta:
                _router_coef(CT, P, i, m, gF * Fi)
            if not want_KQ:
                continue
            # dloss/dA_qk = ga_k; dscores_qk = A_qk (ga_k - sum_k' A_qk' ga_k'); G += x^T dscores x
            for k in range(L):
                ga[k] = gf * phi[k] * scale
            for q in range(L):
                rq = 0.0
                for k in range(L):
                    rq += A[q, k] * ga[k]
                for k in range(L):
                    A[q, k] = A[q, k] * (ga[k] - rq)
            T[:] = 0.0
            _add_product(T, A, x)                 # T = dscores x
            _add_product(GKQ[s, m], xt, T)        # G += x^T T, over the queries in order
        if want_theta:
            _add_product(Gth[s], CT, xsum[s])


def _weights_all(X, XT, WKQ, scale, out):
    """Every expert's pooled token weights (S,M,n,L) (attention frozen: Stages I and III cache them)."""
    S, n, L, d = X.shape
    M = WKQ.shape[1]
    for s in nb.prange(S):
        XW = np.empty((L, d))
        A = np.empty((L, L))
        for m in range(M):
            for i in range(n):
                _scores(X[s, i], XT[s, i], WKQ[s, m], XW, A)
                o = out[s, m, i]
                for k in range(L):
                    o[k] = 0.0
                for q in range(L):
                    for k in range(L):
                        o[k] += A[q, k]
                for k in range(L):
                    o[k] *= scale


def _single(X, XT, y, W, WKQ, sgn, act, want, F, GW, GKQ):
    """The single H-head transformer (``grads.single_step``): per sample and head, the scores A = softmax(x W_KQ x^T)
    by rows, u^T = W x^T (J,L), z = A u and the head's sum of sigma(z) times its sign sgn[h]; the output F, summed
    over the heads in order; then (``want``) each head's backward pass: dloss/dz = sgn gF sigma'(z), W's gradient
    (du^T = Gz^T A, then du^T x), the scores' (dA = Gz u^T through the softmax rows) and W_KQ's (x^T (dS x)), added
    to GW (S,H,J,d) and GKQ (S,H,d,d) sample by sample, in order."""
    S, n, L, d = X.shape
    H, J = W.shape[1], W.shape[2]
    for s in nb.prange(S):
        XW = np.empty((L, d))
        A = np.empty((H, L, L))
        uT = np.empty((H, J, L))
        u = np.empty((L, J))
        Z = np.empty((H, L, J))
        Gz = np.empty((L, J))
        GzT = np.empty((J, L))
        duT = np.empty((J, L))
        dA = np.empty((L, L))
        T = np.empty((L, d))
        for i in range(n):
            x = X[s, i]
            xt = XT[s, i]
            f = 0.0
            for h in range(H):
                _scores(x, xt, WKQ[s, h], XW, A[h])
                uT[h] = 0.0
                _add_product(uT[h], W[s, h], xt)          # u^T[j, k] = <w_j, x_k>
                for k in range(L):
                    for j in range(J):
                        u[k, j] = uT[h, j, k]
                Z[h] = 0.0
                _add_product(Z[h], A[h], u)               # z[q, j] = sum_k A[q, k] u[k, j]
                fh = 0.0
                for q in range(L):
                    for j in range(J):
                        phi, dphi = _act(Z[h, q, j], act)
                        Z[h, q, j] = dphi
                        fh += phi
                f += sgn[h] * fh
            F[s, i] = f
            if not want:
                continue
            gF = _slope(y[s, i], f, n)
            for h in range(H):
                c = sgn[h] * gF
                for q in range(L):
                    for j in range(J):
                        Gz[q, j] = c * Z[h, q, j]
                        GzT[j, q] = Gz[q, j]
                duT[:] = 0.0
                _add_product(duT, GzT, A[h])              # du^T[j, k] = sum_q Gz[q, j] A[q, k]
                _add_product(GW[s, h], duT, x)            # g_j += sum_k du[k, j] x_k
                dA[:] = 0.0
                _add_product(dA, Gz, uT[h])               # dA[q, k] = sum_j Gz[q, j] u[k, j]
                for q in range(L):
                    rq = 0.0
                    for k in range(L):
                        rq += A[h, q, k] * dA[q, k]
                    for k in range(L):
                        dA[q, k] = A[h, q, k] * (dA[q, k] - rq)
                T[:] = 0.0
                _add_product(T, dA, x)                    # T = dS x
                _add_product(GKQ[s, h], xt, T)            # G += x^T T, over the queries in order


_frozen_serial = nb.njit(**_KW)(_frozen)
_live_serial = nb.njit(**_KW)(_live)
_weights_serial = nb.njit(**_KW)(_weights_all)
# the seeds in parallel (MOT_THREADS > 1, make bench): compiled in each process, not cached, since numba's cache
# names a compiled function by its source (file, name, line) and would hand these the serial versions
_frozen_parallel = nb.njit(parallel=True, **{**_KW, "cache": False})(_frozen)
_live_parallel = nb.njit(parallel=True, **{**_KW, "cache": False})(_live)
_weights_parallel = nb.njit(parallel=True, **{**_KW, "cache": False})(_weights_all)
_single_serial = nb.njit(**_KW)(_single)
_single_parallel = nb.njit(parallel=True, **{**_KW, "cache": False})(_single)


def supported(W: torch.Tensor, activation: str, shared: bool) -> bool:
    """Whether the fused kernels cover this MoT: one neuron per expert, its own W_KQ, a known activation."""
    return W.dim() == 3 and not shared and activation in ACTIVATIONS


#: numba compiles with LLVM's loop vectorizer but not its straight-line (SLP) vectorizer, which it leaves off by
#: default since LLVM miscompiled other code with it (numba PR 8852); the kernels are compiled with it on, for
#: ``_add_product``'s registers: it packs the same operations on neighbouring elements into vector instructions, and
#: reorders no sum (the book's runs hash identically with it on and off, and on every instruction set: tests)
_SLP = 1
_SLP_LOCK = threading.Lock()


def _run(serial, parallel, *args):
    """Run a kernel: the parallel version (over seeds) when torch computes on several threads, with as many, else
    the serial; its first call compiles it (or loads it from numba's cache) with the SLP vectorizer on."""
    threads = max(1, min(torch.get_num_threads(), nb.config.NUMBA_NUM_THREADS))
    kernel = serial
    if threads > 1:
        if getattr(_THREADS, "n", 0) != threads:    # numba's thread count is per calling thread
            nb.set_num_threads(threads)
            _THREADS.n = threads
        kernel = parallel
    if kernel not in _READY:
        with _SLP_LOCK:
            before, nb.config.SLP_VECTORIZE = nb.config.SLP_VECTORIZE, _SLP
            try:
                kernel.compile(tuple(nb.typeof(a) for a in args))
            finally:
                nb.config.SLP_VECTORIZE = before
            _READY.add(kernel)
    kernel(*args)


#: the kernels compiled in this process (``_run``; a later call with other argument types compiles without the SLP
#: vectorizer: slower, the same numbers), and the thread count last given to numba by each calling thread
_READY: set = set()
_THREADS = threading.local()


@nb.njit(**_KW)
def _finite(v):
    for k in range(v.shape[0]):
        if not np.isfinite(v[k]):
            return False
    return True


def all_finite(*tensors: torch.Tensor) -> bool:
    """Whether every entry of the (float64) tensors is finite: one compiled pass each, where torch makes several
    small ops per tensor (the training loops' check after every step)."""
    return all(_finite(t.detach().reshape(-1).numpy()) for t in tensors)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _pool_scale(query_pool: str, L: int) -> float:
    if query_pool not in ("sum", "mean"):
        raise ValueError(f"query_pool={query_pool!r} is not allowed; choose 'sum' or 'mean'")
    return grads_pool_scale(query_pool, L)


# ----------------------------------------------------------------------------- the exploration draws
#: torch's CPU generator (``at::mt19937``, torch 2.13): its state as ``Generator.get_state`` lays it out (the legacy
#: pod: the seed (uint64), left (int32), seeded (int32), next (uint64), the 624 words as uint64, then the normal
#: sampler's fields, which uniform draws leave alone)
_MT_N, _MT_M = 624, 397
_MT_LEFT, _MT_NEXT, _MT_STATE, _MT_BYTES = 8, 16, 24, 5056
_TWO_M53 = 2.0 ** -53


@nb.njit(**_KW)
def _mt_twist(st):
    """The Mersenne twister's next 624 words, in place (``at::mt19937::next_state``)."""
    lower, upper, mag, one = np.uint64(0x7fffffff), np.uint64(0x80000000), np.uint64(0x9908b0df), np.uint64(1)
    for i in range(_MT_N - _MT_M):
        y = (st[i] & upper) | (st[i + 1] & lower)
        st[i] = st[i + _MT_M] ^ (y >> one) ^ (mag * (st[i + 1] & one))
    for i in range(_MT_N - _MT_M, _MT_N - 1):
        y = (st[i] & upper) | (st[i + 1] & lower)
        st[i] = st[i + _MT_M - _MT_N] ^ (y >> one) ^ (mag * (st[i + 1] & one))
    y = (st[_MT_N - 1] & upper) | (st[0] & lower)
    st[_MT_N - 1] = st[_MT_M - 1] ^ (y >> one) ^ (mag * (st[0] & one))


def _mt_uniform(state, left, nxt, out):
    """torch.rand(..., dtype=float64) on each seed's generator, in compiled code: the Mersenne twister of
    ``at::mt19937`` (state (S,624) as uint64 words, left and next (S,)), two 32-bit outputs per draw (the first the
    high half: ``random64``), their low 53 bits times 2^-53 (``uniform_real``), filling out (S,K) in order.  The
    same numbers as torch (tested); state, left and next are advanced in place.  The words between two twists are
    tempered as one loop (the compiler runs it as vectors), and the seeds in parallel when threads are asked for."""
    S, K = out.shape
    m32, m53 = np.uint64(0xffffffff), np.uint64((1 << 53) - 1)
    for s in nb.prange(S):
        st = state[s]
        words = np.empty(2 * K, dtype=np.uint64)
        lf, nx, filled = left[s], nxt[s], 0
        while filled < 2 * K:
            avail = lf - 1                  # words left before at::mt19937 twists again
            if avail == 0:
                _mt_twist(st)
                lf, nx, avail = _MT_N + 1, 0, _MT_N
            c = min(avail, 2 * K - filled)
            for j in range(c):
                y = st[nx + j]
                y ^= y >> np.uint64(11)
                y ^= (y << np.uint64(7)) & np.uint64(0x9d2c5680)
                y ^= (y << np.uint64(15)) & np.uint64(0xefc60000)
                y ^= y >> np.uint64(18)
                words[filled + j] = y & m32
            nx += c
            lf -= c
            filled += c
        o = out[s]
        for k in range(K):
            o[k] = np.float64(((words[2 * k] << np.uint64(32)) | words[2 * k + 1]) & m53) * _TWO_M53
        left[s], nxt[s] = lf, nx


_mt_serial = nb.njit(**_KW)(_mt_uniform)
_mt_parallel = nb.njit(parallel=True, **{**_KW, "cache": False})(_mt_uniform)


def mt_rand(gens: list, out: np.ndarray) -> None:
    """``torch.rand(out.shape[1:], generator=g, dtype=torch.float64)`` for each seed's generator ``gens[s]`` into
    ``out[s]``, compiled: the generators' states are read, advanced and written back, so that the streams go on
    as if torch had drawn."""
    raw = np.stack([g.get_state().numpy() for g in gens])
    if raw.shape[1] != _MT_BYTES:
        raise ValueError(f"the exploration streams must be torch CPU generators with torch 2.13's state of {_MT_BYTES} "
                         f"bytes (at::mt19937); got states of {raw.shape[1]} bytes")
    state = raw[:, _MT_STATE:_MT_STATE + 8 * _MT_N].view(np.uint64).copy()
    left = raw[:, _MT_LEFT:_MT_LEFT + 4].view(np.int32)[:, 0].astype(np.int64)
    nxt = raw[:, _MT_NEXT:_MT_NEXT + 8].view(np.uint64)[:, 0].astype(np.int64)
    _run(_mt_serial, _mt_parallel, state, left, nxt, out.reshape(len(gens), -1))
    raw[:, _MT_STATE:_MT_STATE + 8 * _MT_N].view(np.uint64)[:] = state
    raw[:, _MT_LEFT:_MT_LEFT + 4].view(np.int32)[:, 0] = left
    raw[:, _MT_NEXT:_MT_NEXT + 8].view(np.uint64)[:, 0] = nxt
    for g, r in zip(gens, raw):
        g.set_state(torch.from_numpy(r))


class Data:
    """A split's arrays as the kernels read them, made once per run (the data do not change while training): X
    (S,n,L,d), its tokens as columns XT (S,n,d,L), xsum (S,n,d) and y (S,n); and the buffers of the exploration
    draws."""

    def __init__(self, split, M: int):
        self.X = _np(split.X)
        self.XT = split.X.transpose(-1, -2).contiguous().numpy()
        self.xsum, self.y = _np(split.xsum), _np(split.y)
        self.y_t = split.y
        S, n = self.y.shape
        self.noise = np.zeros((S, n, M))

    def draw(self, lam: float, gens: list) -> np.ndarray:
        """The exploration draws r ~ U[0, 1) (S,n,M), one seed's from its own stream, the numbers ``models.route``
        draws with torch.rand (``mt_rand``; none when lam = 0)."""
        if lam > 0:
            mt_rand(gens, self.noise)
        return self.noise


class Splits:
    """Each split of a dataset (``splits["train"]``, ``splits["test"]``) as the kernels read it (``Data``), made on
    first use and kept for the run."""

    def __init__(self, data, M: int):
        self._data, self._M, self._made = data, M, {}

    def __getitem__(self, name: str) -> Data:
        if name not in self._made:
            self._made[name] = Data(getattr(self._data, name), self._M)
        return self._made[name]


def token_weights_all(data: Data, WKQ: torch.Tensor, query_pool: str = "sum") -> torch.Tensor:
    """``models.token_weights_all`` through the kernels: a (S,M,n,L) for every expert."""
    S, n, L, d = data.X.shape
    out = np.empty((S, WKQ.shape[1], n, L))
    _run(_weights_serial, _weights_parallel, data.X, data.XT, _np(WKQ), _pool_scale(query_pool, L), out)
    return torch.from_numpy(out)


def _passes(p: dict, data: Data, lam: float, gens: list, a_cache: torch.Tensor | None, activation: str,
            query_pool: str, wrt: tuple):
    """The kernels' pass over a split: routing, outputs F and, for the parameters in ``wrt``, gradients."""
    W, theta = p["W"], p["theta"]
    S, n, L, d = data.X.shape
    M = theta.shape[1]
    if not supported(W, activation, False):
        raise ValueError(f"the fused kernels cover one-neuron experts with their own W_KQ and activation in "
                         f"{list(ACTIVATIONS)}; got W of shape {tuple(W.shape)}, activation={activation!r}")
    scale = _pool_scale(query_pool, L)
    # W's rows and their gradients as (1,d) matrices, for _add_product
    F, idx, H, a = np.empty((S, n)), np.empty((S, n), dtype=np.int64), np.empty((S, n, M)), np.empty((S, n, L))
    GW, Gth = torch.zeros_like(W), torch.zeros_like(theta)
    W1, GW1 = _np(W)[:, :, None], GW.numpy()[:, :, None]
    act, want_W, want_theta = ACTIVATIONS[activation], "W" in wrt, "theta" in wrt
    r = data.draw(lam, gens)
    thetaT = _np(theta.transpose(1, 2))
    grads = {"W": GW, "theta": Gth}
    if a_cache is None:
        GKQ = torch.zeros_like(p["WKQ"])
        _run(_live_serial, _live_parallel,
            data.X, data.XT, data.xsum, data.y, W1, _np(p["WKQ"]), thetaT, r, float(lam), act, scale, want_W,
            "WKQ" in wrt, want_theta, idx, H, F, a, GW1, GKQ.numpy(), Gth.numpy())
        grads["WKQ"] = GKQ
    else:
        if "WKQ" in wrt:
            raise ValueError("the W_KQ gradient needs live attention (a_cache=None)")
        _run(_frozen_serial, _frozen_parallel,
            data.X, data.xsum, data.y, W1, thetaT, _np(a_cache), r, float(lam), act, want_W, want_theta, idx,
            H, F, a, GW1, Gth.numpy())
    return torch.from_numpy(F), {k: grads[k] for k in wrt}, torch.from_numpy(idx), torch.from_numpy(H), \
        torch.from_numpy(a)


def step(p: dict, data: Data, lam: float, gens: list, a_cache: torch.Tensor | None, *, activation: str,
         query_pool: str, wrt: tuple) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
    """One training step's passes: the routing (the gate's scores, the exploration draws of ``gens`` at ``lam``,
    top-1), the outputs F (S,n) and the gradients named in ``wrt`` (among "W", "WKQ", "theta") of the per-seed mean
    logistic loss.  ``a_cache``: every expert's token weights (S,M,n,L) while attention is frozen, or (S,1,n,L)
    shared by all (the attention-free MoE's uniform weights); None computes the routed expert's attention live from
    ``p["WKQ"]``.  Returns (F, grads, routing idx (S,n), gate scores h (S,n,M))."""
    F, grads, idx, H, _ = _passes(p, data, lam, gens, a_cache, activation, query_pool, wrt)
    return F, grads, idx, H


def mot_step(p: dict, data: Data, lam: float, gens: list, a_cache: torch.Tensor | None, *, activation: str,
             query_pool: str, wrt: tuple) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
    """``step`` with the per-seed mean logistic loss (S,) (``models.logistic_loss`` of the margins) in place of the
    outputs: (loss, grads, idx, h), as ``grads.mot_step`` returns them."""
    F, grads, idx, H = step(p, data, lam, gens, a_cache, activation=activation, query_pool=query_pool, wrt=wrt)
    return logistic_loss(data.y_t * F).mean(-1), grads, idx, H


def forward(p: dict, data: Data, a_cache: torch.Tensor | None, *, activation: str,
            query_pool: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The MoT's outputs on a split at the gate's own routing (no exploration): (F (S,n), idx (S,n), the routed
    experts' token weights a (S,n,L)); ``a_cache`` as in ``mot_step``."""
    F, _, idx, _, a = _passes(p, data, 0.0, [], a_cache, activation, query_pool, ())
    return F, idx, a


# ----------------------------------------------------------------------------- the single transformer
def single_step(p: dict, data: Data, *, activation: str, signs: torch.Tensor | None = None,
                grads: bool = True) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """``grads.single_step`` through the kernel: the per-seed mean logistic loss (S,), (``grads``) the gradients in
    W (S,H,J,d) and W_KQ (S,H,d,d), and the outputs F (S,n) of the single H-head transformer on a split (``Data``).
    ``signs``: the heads' output signs (``models.head_signs``; None: every head adds)."""
    W, WKQ = p["W"], p["WKQ"]
    S, n = data.y.shape
    H = W.shape[1]
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not allowed; choose one of {list(ACTIVATIONS)}")
    sgn = np.ones(H) if signs is None else _np(signs.to(torch.float64))
    F = np.empty((S, n))
    GW, GKQ = torch.zeros_like(W), torch.zeros_like(WKQ)
    _run(_single_serial, _single_parallel, data.X, data.XT, data.y, _np(W), _np(WKQ), sgn, ACTIVATIONS[activation],
         grads, F, GW.numpy(), GKQ.numpy())
    F = torch.from_numpy(F)
    loss = logistic_loss(data.y_t * F).mean(-1)
    return loss, ({"W": GW, "WKQ": GKQ} if grads else {}), F
