"""Images per second of the real-data models (chapter 07), and batched experts against a per-expert loop.

    python benchmarks/bench_realdata.py --device cpu --n-train 2000 --n-test 500 --epochs 1
    python benchmarks/bench_realdata.py --device cuda --n-train 50000 --n-test 10000 --epochs 3 --chapter

Writes a CIFAR-10-format folder of random images (and, with --chapter, a CIFAR-100 one) of the given
size, then:
1. one training step (forward, backward, Adam) of the MoT at CIFAR size, experts batched
   (``mot_forward``) and as a Python loop over experts (``mot_forward_loop``): images/s of each and
   their ratio, measured in the same run;
2. every model trained for ``--epochs`` epochs on ``--seeds`` seeds: images/s (training images x seeds x
   epochs over the wall time, per-epoch test evaluation included);
3. with --chapter: the chapter's CIFAR path (``run_dataset``) on both CIFAR folders, its summary table,
   verdicts and experts used (random labels: the numbers test the plumbing and the speed, not the claims).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mot_lib.experiments import realdata as rd  # noqa: E402


def write_random_cifar(root: Path, which: str, n_train: int, n_test: int, seed: int = 0) -> Path:
    spec = rd.CIFAR[which]
    d = root / spec["sub"]
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = np.full(len(spec["train"]), n_train // len(spec["train"]))
    sizes[: n_train % len(spec["train"])] += 1
    for f, k in list(zip(spec["train"], sizes)) + [(spec["test"], n_test)]:
        with open(d / f, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (int(k), 3072), dtype=np.uint8),
                         spec["labels"].encode(): rng.integers(0, spec["C"], int(k)).tolist()}, fh, protocol=4)
    with open(d / spec["meta"], "wb") as fh:
        pickle.dump({spec["names"].encode(): [f"class{i}".encode() for i in range(spec["C"])]}, fh, protocol=4)
    return root


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_rate(data, cfg, device, batched: bool, S: int = 1, steps: int = 5) -> float:
    """Images/s of MoT training steps (forward, backward, Adam) with batched or looped experts."""
    size = rd.model_sizes(data.p, data.L, data.n_classes, cfg)["MoT"]
    per = [rd.init_model("MoT", s, data, size, cfg) for s in range(S)]
    P = {k: torch.stack([q[k] for q in per]).to(device).requires_grad_(True) for k in per[0]}
    with torch.no_grad():   # a trained-looking gate: routing spread over the experts
        P["theta"].normal_(generator=None)
    opt = torch.optim.Adam(P.values(), lr=1e-3)
    fwd = rd.mot_forward if batched else rd.mot_forward_loop
    B = cfg.batch_size
    g = torch.Generator().manual_seed(0)
    X, y = data.X_train.to(device), data.y_train.to(device)

    def one():
        idx = torch.randint(0, X.shape[0], (S, B), generator=g).to(device)
        ex = {k: v for k, v in P.items() if k != "theta"}
        logits, _ = fwd(ex, P["theta"], X[idx], None, cfg.heads_expert, torch.rand(S, B, cfg.M, device=device))
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    one()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        one()
    sync(device)
    return S * B * steps / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--step-steps", type=int, default=5)
    ap.add_argument("--chapter", action="store_true")
    ap.add_argument("--chapter-epochs", type=int, default=0, help="epochs of the chapter path (0: --epochs)")
    ap.add_argument("--cpu-too", type=int, default=0, help="also time N CPU training images (MoT, one seed)")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = rd.resolve_device(a.device)
    print(f"device {device} ({torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    res = {"device": str(device)}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        root = write_random_cifar(Path(tmp), "cifar10", a.n_train, a.n_test)
        if a.chapter:
            write_random_cifar(Path(tmp), "cifar100", a.n_train, a.n_test, seed=1)
        data = rd.prepare("cifar10", data_dir=str(root), noise_share=0.25)
        print(f"wrote and loaded the CIFAR-format data in {time.perf_counter() - t:.1f} s: "
              f"train {tuple(data.X_train.shape)}, test {tuple(data.X_test.shape)}", flush=True)
        cfg = rd.ModelConfig(M=5, width=a.width, epochs=a.epochs, T1=a.epochs // 3, T2=2 * a.epochs // 3,
                             batch_size=a.batch_size, lr=a.lr, lr_gate=a.lr)
        # 1. batched experts against the loop
        for S in (1, len(a.seeds)):
            rb = step_rate(data, cfg, device, True, S, a.step_steps)
            rl = step_rate(data, cfg, device, False, S, a.step_steps)
            res[f"step_batched_S{S}"], res[f"step_loop_S{S}"] = rb, rl
            print(f"MoT training step, {S} seed(s) x batch {a.batch_size}: batched experts {rb:,.0f} img/s, "
                  f"loop over experts {rl:,.0f} img/s, ratio {rb / rl:.2f}", flush=True)
        # 2. every model, a few epochs
        sizes = rd.model_sizes(data.p, data.L, data.n_classes, cfg)
        for name in rd.MODELS:
            t = time.perf_counter()
            run = rd.train(name, data, a.seeds, cfg, device, schedule="joint" if name == "MoT (joint)" else None)
            sync(device)
            dt = time.perf_counter() - t
            rate = len(a.seeds) * data.y_train.numel() * a.epochs / dt
            res[f"train_{name}"] = rate
            print(f"{name:20s} params {sizes[name]['params']:>9,}  {dt:6.1f} s for {a.epochs} epochs x "
                  f"{len(a.seeds)} seeds: {rate:,.0f} img/s (eval included); final test acc "
                  f"{np.round(run.final('test_acc').to_numpy(), 3).tolist()}", flush=True)
        if a.cpu_too:
            cpu = torch.device("cpu")
            small = rd.prepare("cifar10", data_dir=str(root), noise_share=0.25, max_train=a.cpu_too)
            rb = step_rate(small, cfg, cpu, True, 1, 3)
            rl = step_rate(small, cfg, cpu, False, 1, 3)
            res["cpu_step_batched"], res["cpu_step_loop"] = rb, rl
            print(f"CPU ({torch.get_num_threads()} threads) MoT training step, batch {a.batch_size}: batched "
                  f"{rb:,.0f} img/s, loop {rl:,.0f} img/s", flush=True)
            one = dataclasses.replace(cfg, epochs=1, T1=0, T2=0)
            for name in ("MoT", "single ViT"):
                t = time.perf_counter()
                rd.train(name, small, [0], one, cpu)
                dt = time.perf_counter() - t
                res[f"cpu_train_{name}"] = a.cpu_too / dt
                print(f"CPU {name}: {a.cpu_too / dt:,.0f} img/s over 1 epoch of {a.cpu_too} images "
                      f"(eval on {small.y_test.numel()} test images included)", flush=True)
        # 3. the chapter's CIFAR path on both data sets
        if a.chapter:
            P = rd.RealDataParams(dataset="cifar10+cifar100", data_dir=str(root), seeds=tuple(a.seeds),
                                  epochs=a.chapter_epochs or a.epochs, batch_size=a.batch_size, lr=a.lr, lr_gate=a.lr,
                                  width=a.width, noise_shares=(0.25,), device=str(device.type))
            used = {}
            for ds in P.datasets():
                t = time.perf_counter()
                out = rd.run_dataset(P, ds, device)
                dt = time.perf_counter() - t
                s = rd.summary_table(out["runs"], out["target"])
                print(f"\n{ds}: chapter path in {dt:.1f} s\n{s.to_string()}", flush=True)
                used[ds] = rd.experts_used(out["runs"]["MoT"].dispatch, P.used_share)
                print(f"experts used by the MoT per seed: {used[ds].tolist()}")
                for r in rd.verdict_rows(out["runs"], out["target"], P.share_pass, ds):
                    print(f"  {r['claim']}: {r['measured']:.3g} {r['interval']} -> {r['verdict']}")
            r = rd.used_verdict_row(used["cifar10"], used["cifar100"])
            print(f"  {r['claim']}: {r['measured']:.3g} {r['interval']} -> {r['verdict']}", flush=True)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "bench_realdata.json").write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
