"""A candidate for issue 19, measured, not used by the book: Stage II of the MoT (live attention, W_KQ trains) as one
fused numba kernel per seed, against the engine's closed-form pass (``mot_lib.engine.grads.mot_step``) on the
same step, in one run.

The engine spends most of a three-stage run in Stage II (``make bench``'s workload: about 20 ms a step on 2
threads of a 2-core AMD EPYC, against 2.5 ms in Stages I and III): every step regroups the samples by their routed
expert and runs many tiny products.  Here each sample's forward and backward pass is written out (scores, softmax,
pooled token weights, logistic loss, the W_KQ gradient accumulated per seed and expert in sample order), one seed
per thread, so the sums do not depend on the thread count.  It agrees with ``mot_step`` to about 1e-15 but not to
the bit (another summation order), so adopting it would move the book's numbers at rounding level: the committed
tables' canaries (relative tolerance 1e-7) and every chapter's printed outputs would have to be checked again.

numba is not a dependency of the book.  To run:  .venv/bin/pip install numba && .venv/bin/python
benchmarks/candidate_stage2_numba.py [threads]
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch

try:
    import numba as nb
except ImportError:
    sys.exit("numba is not installed (it is not a dependency of the book): .venv/bin/pip install numba")

import mot_lib as mot
from mot_lib.engine.data import seed_streams
from mot_lib.engine.grads import mot_step
from mot_lib.engine.models import init_mot, route, router_scores


@nb.njit(parallel=True)
def stage2(X, WKQ, W, idx, pi, y, G, F, loss):
    """Cubic experts, attention pooled by sum over queries: per seed s (in parallel) and sample i in order, the
    routed expert's F = pi f, the mean logistic loss and its W_KQ gradient, added into G[s, idx[s, i]]."""
    S, n, L, d = X.shape
    for s in nb.prange(S):
        XW = np.empty((L, d))
        A = np.empty((L, L))
        T = np.empty((L, d))
        phi = np.empty(L)
        ga = np.empty(L)
        total = 0.0
        for i in range(n):
            m = idx[s, i]
            x, Wk, w = X[s, i], WKQ[s, m], W[s, m]
            for k in range(L):
                z = 0.0
                for e in range(d):
                    z += x[k, e] * w[e]
                phi[k] = z * z * z
            fsum = 0.0
            for q in range(L):                       # scores x_q^T W_KQ x_k and their softmax over keys
                for f in range(d):
                    XW[q, f] = 0.0
                for e in range(d):
                    c = x[q, e]
                    for f in range(d):
                        XW[q, f] += c * Wk[e, f]
                top = -1e300
                for k in range(L):
                    v = 0.0
                    for f in range(d):
                        v += XW[q, f] * x[k, f]
                    A[q, k] = v
                    top = max(top, v)
                norm = 0.0
                for k in range(L):
                    A[q, k] = math.exp(A[q, k] - top)
                    norm += A[q, k]
                for k in range(L):
                    A[q, k] /= norm
                    fsum += A[q, k] * phi[k]
            Fi = pi[s, i] * fsum
            F[s, i] = Fi
            margin = y[s, i] * Fi
            total += (max(-margin, 0.0) + math.log1p(math.exp(-abs(margin)))) / n
            gf = -y[s, i] / (1.0 + math.exp(margin)) / n * pi[s, i]
            for k in range(L):
                ga[k] = gf * phi[k]
            for q in range(L):                       # dloss/dscores, then T = dS X and G += X^T T
                r = 0.0
                for k in range(L):
                    r += A[q, k] * ga[k]
                for f in range(d):
                    T[q, f] = 0.0
                for k in range(L):
                    c = A[q, k] * (ga[k] - r)
                    for f in range(d):
                        T[q, f] += c * x[k, f]
            Gm = G[s, m]
            for q in range(L):
                for e in range(d):
                    c = x[q, e]
                    for f in range(d):
                        Gm[e, f] += c * T[q, f]
        loss[s] = total


def main(threads: int = 2, steps: int = 20) -> int:
    torch.set_num_threads(threads)
    nb.set_num_threads(threads)
    st, seeds = mot.Setting(), list(range(8))
    data = mot.make_dataset(st, seeds)
    cfg = mot.TrainConfig(M=8, T1=120, T2=180, T=300)
    streams = [seed_streams(s) for s in seeds]
    p = init_mot(len(seeds), cfg.M, st.d, cfg.sigma0, [g[1] for g in streams])
    p["W"] *= 30                                               # the scale of a specialised expert
    gen = torch.Generator().manual_seed(0)
    p["theta"] = torch.randn(len(seeds), cfg.M, st.d, dtype=torch.float64, generator=gen) * 0.01
    X, y, xs = data.train.X, data.train.y, data.train.xsum
    h = router_scores(xs, p["theta"])
    idx = route(h, cfg.lam, [g[2] for g in streams])
    kw = dict(activation="cubic", query_pool="sum", shared=False, wrt=("WKQ", "theta"))
    ref_loss, ref = mot_step(p, X, xs, y, idx, h, None, **kw)
    pi = torch.gather(torch.softmax(h, -1), -1, idx[..., None])[..., 0].numpy().copy()
    args = (X.numpy(), p["WKQ"].numpy(), p["W"].numpy(), idx.numpy().astype(np.int64), pi, y.numpy())

    def fused():
        G = np.zeros(p["WKQ"].shape)
        F, loss = np.empty(idx.shape), np.empty(len(seeds))
        stage2(*args, G, F, loss)
        return G, loss

    t0 = time.perf_counter()
    G, loss = fused()
    compile_s = time.perf_counter() - t0
    gap = float(np.abs(G - ref["WKQ"].numpy()).max() / np.abs(ref["WKQ"].numpy()).max())
    timed = {}
    engine = lambda: mot_step(p, X, xs, y, idx, h, None, **kw)  # noqa: E731
    for name, f in (("fused numba kernel", fused), ("engine's closed form", engine)):
        t0 = time.perf_counter()
        for _ in range(steps):
            f()
        timed[name] = (time.perf_counter() - t0) / steps * 1e3
    print(f"Stage II step, S={len(seeds)} seeds x M={cfg.M} experts, n={st.n_train}, {threads} threads; "
          f"compile {compile_s:.1f} s")
    print(f"W_KQ gradient agrees to {gap:.1e} (relative), loss to {float(np.abs(loss - ref_loss.numpy()).max()):.1e}")
    for name, ms in timed.items():
        print(f"{name}: {ms:.2f} ms/step")
    ratio = timed["engine's closed form"] / timed["fused numba kernel"]
    print(f"Stage II speedup: {ratio:.1f}x")
    return 0 if gap < 1e-10 else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:2])))
