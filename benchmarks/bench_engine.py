"""Batched engine vs a straightforward per-seed, per-expert reference, measured in one run.

Workload: the default setting (mot.Setting()), S=8 seeds, M=8 experts, the
three-stage schedule over a few hundred full-batch steps.  The reference is what
one would write first: a Python loop over seeds, and inside it a loop over
per-expert ``nn.Module``s applied to the samples routed to them.  Both see the
same data, initial weights and exploration noise; the script checks that they
agree numerically, then prints timings, the peak memory, GFLOP/s against the
machine's measured matmul peak, and as its last line ``speedup: <ratio>x``
(the engine's default, the fused kernels of ``mot_lib.engine.fused``, against the loop).
Each MoT way is run ``--repeat`` times (3), interleaved, and its fastest time kept; every time is printed.
It also times the engine's closed form in torch ops (``gradients="closed"``, ``mot_lib.engine.grads``,
the engine before the kernels) and through autograd (``gradients="autograd"``), the exploration draws both ways
(torch.rand and ``fused.mt_rand``), and the single transformer three ways (its kernel ``fused.single_step``, its
closed form in torch ops and autograd; S=8 seeds, H=16 heads), so each ratio is measured in one run, and the
MoT's time per stage (the run cut at T1 and at T2), beside what 10x against the loop would leave for the whole run.

    make bench        # or: .venv/bin/python benchmarks/bench_engine.py [--steps 300]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch
from torch import nn

import mot_lib as mot
from mot_lib.engine import fused
from mot_lib.engine.data import seed_streams
from mot_lib.engine.models import init_mot


class Expert(nn.Module):
    """One transformer expert: merged key-query matrix and an FFN vector (cubic)."""

    def __init__(self, W, WKQ):
        super().__init__()
        self.W = nn.Parameter(W.clone())
        self.WKQ = nn.Parameter(WKQ.clone())

    def forward(self, X):  # X (n_i, L, d)
        A = torch.softmax(X @ self.WKQ @ X.transpose(1, 2), dim=-1)
        return (A.sum(-2) * (X @ self.W) ** 3).sum(-1)


def reference_train(setting, cfg, seeds, data):
    """Loop over seeds, then over experts; returns final (W, WKQ, theta) stacked like the engine's."""
    out = {"W": [], "WKQ": [], "theta": []}
    for k, seed in enumerate(seeds):
        streams = seed_streams(seed)
        p0 = init_mot(1, cfg.M, setting.d, cfg.sigma0, [streams[1]])
        experts = [Expert(p0["W"][0, m], p0["WKQ"][0, m]) for m in range(cfg.M)]
        theta = nn.Parameter(torch.zeros(cfg.M, setting.d, dtype=torch.float64))
        X, y = data.train.X[k], data.train.y[k]
        xsum = X.sum(1)
        for t in range(1, cfg.T + 1):
            stage = mot.stage_of(t, cfg)
            h = xsum @ theta.T
            r = torch.rand(X.shape[0], cfg.M, generator=streams[2], dtype=torch.float64) * cfg.lam
            idx = torch.argmax(h.detach() + r, dim=-1)
            pi = torch.softmax(h, dim=-1)
            F = torch.zeros(X.shape[0], dtype=torch.float64)
            for m, e in enumerate(experts):
                mask = idx == m
                if mask.any():
                    F = F.index_put((mask,), pi[mask, m] * e(X[mask]))
            loss = nn.functional.softplus(-y * F).mean()
            params = [theta] + [e.W if stage != "II" else e.WKQ for e in experts]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            with torch.no_grad():
                theta -= cfg.eta_router * grads[0]
                for e, g in zip(experts, grads[1:]):
                    if g is None:
                        continue
                    p = e.WKQ if stage == "II" else e.W
                    opt, eta = {"I": (cfg.stage1_opt, cfg.eta1), "II": (cfg.stage2_opt, cfg.eta2),
                                "III": (cfg.stage3_opt, cfg.eta3)}[stage]
                    n = g.norm()
                    p -= eta * (g / n if opt == "ngd" and n > 0 else (g if opt == "gd" else 0 * g))
        out["W"].append(torch.stack([e.W.detach() for e in experts]))
        out["WKQ"].append(torch.stack([e.WKQ.detach() for e in experts]))
        out["theta"].append(theta.detach())
    return {k: torch.stack(v) for k, v in out.items()}


def step_flops(S, n, L, d, M, stage, attention=True) -> float:
    """Approximate floating-point operations of one full-batch MoT training step (matmul work only): per seed and
    sample, the forward pass (the router's scores 2 d M, the routed expert's FFN on every token 2 L d, and in Stage II
    its attention scores X W_KQ X^T, 2 L d^2 + 2 L^2 d; a cached gather in Stages I and III) and the products of the
    gradients the stage trains (no input gradient is formed): Theta's 2 d M, W's 2 L d (Stages I and III), W_KQ's
    dS X and X^T (dS X), 2 L^2 d + 2 L d^2 (Stage II)."""
    att = 2 * L * d * d + 2 * L * L * d if stage == "II" and attention else 0
    fwd = 2 * d * M + 2 * L * d + att
    bwd = 2 * d * M + (0 if stage == "II" else 2 * L * d) + att
    return float(S * n * (fwd + bwd))


def single_step_flops(S, n, L, d, H, J) -> float:
    """Approximate matmul FLOPs of one single-transformer step: per sample and head, the forward pass (x W_KQ for
    every token 2 L d^2, the scores 2 L^2 d, the neurons' inputs 2 L d J, the attention-weighted sums 2 L^2 J) and
    the gradients' products (W_KQ's dS x and x^T (dS x), 2 L^2 d + 2 L d^2; W's A^T Gz and du^T x, 2 L^2 J +
    2 L d J; the scores' Gz u^T, 2 L^2 J)."""
    fwd = 2 * L * d * d + 2 * L * L * d + 2 * L * d * J + 2 * L * L * J
    bwd = 2 * L * L * d + 2 * L * d * d + 4 * L * L * J + 2 * L * d * J
    return float(S * n * H * (fwd + bwd))


def matmul_peak(threads: int, size: int = 1024, reps: int = 5) -> float:
    """Measured float64 GFLOP/s of a square matmul on this machine, at the benchmark's thread count, under the
    pinned numerics (MKL_CBWR=COMPATIBLE,STRICT: MKL's code path common to every x86-64, without FMA; the kernels
    compile without FMA too, but with the CPU's vector width, so they can pass this peak)."""
    a = torch.randn(size, size, dtype=torch.float64)
    b = torch.randn(size, size, dtype=torch.float64)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size ** 3 * reps / (time.perf_counter() - t0) / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heads", type=int, default=16, help="the single transformer's heads")
    ap.add_argument("--single-steps", type=int, default=20, help="the single transformer's steps (each way)")
    ap.add_argument("--repeat", type=int, default=3, help="times each MoT way is run (the fastest is kept)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error(f"--repeat {args.repeat} is not allowed; give at least 1")
    torch.set_num_threads(args.threads)
    setting = mot.Setting()
    T = args.steps
    cfg = mot.TrainConfig(M=args.experts, T1=int(0.4 * T), T2=int(0.6 * T), T=T, record_every=T)
    seeds = list(range(args.seeds))
    data = mot.make_dataset(setting, seeds)
    print(f"workload: S={len(seeds)} seeds x M={cfg.M} experts, N={setting.N} d={setting.d} L={setting.L} "
          f"n_train={setting.n_train}, {T} full-batch steps (T1={cfg.T1}, T2={cfg.T2}), torch threads={args.threads}")

    # warm-up (MKL's and the allocator's first calls), so that neither timed run pays for them
    mot.train_mot(setting, cfg.replace(T=6, T1=2, T2=4), seeds, data=data, progress=False)
    # each way timed args.repeat times, interleaved (so that a slow phase of a shared machine falls on every way
    # alike), and its fastest time kept: the noise of other processes only ever adds time
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ways = {"fused": lambda: mot.train_mot(setting, cfg, seeds, data=data, progress=False),
            "closed": lambda: mot.train_mot(setting, cfg, seeds, data=data, progress=False, gradients="closed"),
            "autograd": lambda: mot.train_mot(setting, cfg, seeds, data=data, progress=False, gradients="autograd"),
            "loop": lambda: reference_train(setting, cfg, seeds, data)}
    took, out = {k: [] for k in ways}, {}
    for _ in range(args.repeat):
        for k, fn in ways.items():
            t0 = time.perf_counter()
            out[k] = fn()
            took[k].append(time.perf_counter() - t0)
            if k == "fused" and len(took[k]) == 1:
                rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t_engine, t_closed, t_auto, t_ref = (min(took[k]) for k in ways)
    run, closed, ref = out["fused"], out["closed"], out["loop"]
    print(f"each way run {args.repeat} times, interleaved; the fastest kept (all, in s: "
          + "; ".join(f"{k} " + ", ".join(f"{t:.2f}" for t in v) for k, v in took.items()) + ")")

    worst = max(float(((run.params[k] - ref[k]).abs().max() / ref[k].abs().max().clamp_min(1e-300)))
                for k in ("W", "WKQ", "theta"))
    torch_gap = max(float(((run.params[k] - closed.params[k]).abs().max() / closed.params[k].abs().max()
                           .clamp_min(1e-300))) for k in ("W", "WKQ", "theta"))
    print(f"agreement: max relative difference of final weights = {worst:.2e} against the loop, {torch_gap:.2e} "
          f"against the closed form in torch ops")
    if not worst < 1e-6:
        print("FAIL: engine and reference disagree", file=sys.stderr)
        return 1
    print(f"batched engine, fused kernels:      {t_engine:.2f} s ({1e3 * t_engine / T:.1f} ms/step, history "
          f"recorded at step 0, T1, T2 and T only)")
    print(f"batched engine, torch closed form:  {t_closed:.2f} s ({1e3 * t_closed / T:.1f} ms/step)")
    print(f"batched engine through autograd:    {t_auto:.2f} s ({1e3 * t_auto / T:.1f} ms/step)")
    print(f"reference loop:                     {t_ref:.2f} s ({1e3 * t_ref / T:.1f} ms/step)")
    print(f"peak memory (process max RSS) after the batched run: {rss1 / 2**20:.2f} GiB "
          f"(+{(rss1 - rss0) / 2**20:.2f} GiB over the data and imports)")
    peak = matmul_peak(args.threads)
    flops = sum(step_flops(len(seeds), setting.n_train, setting.L, setting.d, cfg.M, mot.stage_of(t, cfg))
                for t in range(1, T + 1))
    print(f"MoT achieved: {flops / t_engine / 1e9:.2f} GFLOP/s (approximate matmul FLOPs) against a measured float64 "
          f"matmul peak of {peak:.1f} GFLOP/s on this machine ({args.threads} threads, MKL under the pinned "
          f"numerics): "
          f"{100 * flops / t_engine / 1e9 / peak:.0f}% (through autograd: {flops / t_auto / 1e9:.2f} GFLOP/s)")

    sc = mot.SingleConfig(H=args.heads, J=2, T=args.single_steps, record_every=args.single_steps)
    times = {}
    for how in ("fused", "closed"):     # warm-up: the kernel's compile (each process) and MKL's first calls
        mot.train_single(setting, sc.replace(T=1, record_every=1), seeds, data=data, progress=False, gradients=how)
    for how in ("fused", "closed", "autograd"):
        t0 = time.perf_counter()
        runs = mot.train_single(setting, sc, seeds, data=data, progress=False, gradients=how)
        times[how] = (time.perf_counter() - t0, runs)
    gap = max(float((times[how][1].params[k] - times["autograd"][1].params[k]).abs().max()
                    / times["autograd"][1].params[k].abs().max()) for k in ("W", "WKQ") for how in ("fused", "closed"))
    sflops = args.single_steps * single_step_flops(len(seeds), setting.n_train, setting.L, setting.d, sc.H, sc.J)
    t_f, t_c, t_a = times["fused"][0], times["closed"][0], times["autograd"][0]
    print(f"single transformer (H={sc.H}, J={sc.J}), {sc.T} steps: fused kernel {t_f:.2f} s, closed form in torch ops "
          f"{t_c:.2f} s, through autograd {t_a:.2f} s; weights agree to {gap:.1e}; kernel "
          f"{sflops / t_f / 1e9:.2f} GFLOP/s ({100 * sflops / t_f / 1e9 / peak:.0f}% of peak), closed form "
          f"{sflops / t_c / 1e9:.2f} GFLOP/s")
    print(f"single transformer speedup: {t_c / t_f:.1f}x (the kernel against its closed form in torch ops, the "
          f"implementation before it; {t_a / t_f:.1f}x against autograd)")
    # where the engine's time goes: the same run cut at T1 (Stage I) and at T2 (Stages I-II), so that the Stage I/III
    # and Stage II costs per step, and what a 10x target leaves for them, are measured in this run too
    cut = {}
    for end in (cfg.T1, cfg.T2):
        t0 = time.perf_counter()
        mot.train_mot(setting, cfg.replace(T=end, T2=min(cfg.T2, end), record_every=end), seeds, data=data,
                      progress=False)
        cut[end] = time.perf_counter() - t0
    n13 = cfg.T1 + (T - cfg.T2)
    t13 = cut[cfg.T1] + (t_engine - cut[cfg.T2])
    t2 = cut[cfg.T2] - cut[cfg.T1]
    print(f"MoT by stage: Stages I and III {1e3 * t13 / n13:.1f} ms/step ({t13:.2f} s for {n13} steps), Stage II "
          f"{1e3 * t2 / (cfg.T2 - cfg.T1):.1f} ms/step ({t2:.2f} s for {cfg.T2 - cfg.T1} steps); 10x against the loop "
          f"would be {t_ref / 10:.2f} s for the whole run")
    # the exploration draws: one call per seed and step on the seed's own torch stream, as the loop and the torch
    # engines draw them, and the same numbers drawn by the fused engine's compiled twister (fused.mt_rand)
    gens, buf = [seed_streams(s)[2] for s in seeds], torch.empty(setting.n_train, cfg.M, dtype=torch.float64)
    t0 = time.perf_counter()
    for _ in range(T):
        for g in gens:
            torch.rand(setting.n_train, cfg.M, generator=g, dtype=torch.float64, out=buf)
    t_rand = time.perf_counter() - t0
    draws = np.empty((len(seeds), setting.n_train, cfg.M))
    t0 = time.perf_counter()
    for _ in range(T):
        fused.mt_rand(gens, draws)
    print(f"the exploration draws alone ({T} x {len(seeds)} draws of {setting.n_train} x {cfg.M} from each seed's own "
          f"stream): torch.rand {t_rand:.2f} s, the fused engine's compiled twister {time.perf_counter() - t0:.2f} s")
    print(f"MoT against the loop: torch closed form {t_ref / t_closed:.1f}x, through autograd {t_ref / t_auto:.1f}x; "
          f"fused kernels against the torch closed form: {t_closed / t_engine:.1f}x")
    print(f"speedup: {t_ref / t_engine:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
