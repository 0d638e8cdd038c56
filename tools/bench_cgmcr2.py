#!/usr/bin/env python
"""CgMCR² against KMeans and SpectralClustering on Fashion-MNIST EfficientNet-Lite0 features.

  python tools/bench_cgmcr2.py                        # 10k-train subset, T₁=5, T₂=10 (SPEC §7's CI variant)
  python tools/bench_cgmcr2.py --full                 # all 60k training images, Table A.3's T₁=20, T₂=30
  python tools/bench_cgmcr2.py --seeds 0 1 2 -- method.eps=0.5   # recipe overrides after --
  python tools/bench_cgmcr2.py --timing-only                         # the ms per iteration alone

Quality: each seed trains recipes/cgmcr2_fmnist.py (one process, the recipe's code path) and reads the
run's results table: CgMCR² (argmax), CgMCR²-SC, KMeans and SpectralClustering, all on the 10,000 test
images' features in the same run; mean ± std over seeds. Speed: ms per training iteration (forward,
backward and Adam step of the whole model and loss) at batch 512, and total fit time against KMeans.
The features come from the data layer (data/fmnist_effnet_112, extracted on first use).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

METHODS = ["cgmcr2", "cgmcr2_sc", "kmeans", "spectral"]
TIMING_LABEL = "training iteration at batch 512 (forward + backward + Adam, one process):"


def train_one(seed: int, run_dir: str, overrides: list[str]) -> dict:
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "cgmcr2_fmnist.py"), f"seed={seed}",
           f"run_dir={run_dir}", "ckpt.resume=false", "engine.progress=false", *overrides]
    env = dict(os.environ, DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"))
    print("running:", " ".join(cmd), flush=True)
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"seed {seed} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return json.load(open(os.path.join(run_dir, "results_table.json")))["rows"]


def ms_per_iteration(overrides: list[str], batch: int = 512, iters: int = 10) -> float:
    """Median time of one training step (model + loss forward, backward, Adam) at `batch`, one process."""
    import torch

    from dist_cluster.launch import build_config, load_recipe
    from dist_cluster.methods.base import total_loss
    from dist_cluster.methods.cgmcr2.data import load_arrays
    from dist_cluster.methods.cgmcr2.method import CgMCR2
    cfg = build_config(load_recipe("cgmcr2_fmnist"), overrides)
    cfg.method.global_batch = 0
    method = CgMCR2(cfg)
    x = load_arrays(cfg.data)["train"][0]
    opt = torch.optim.Adam(method.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    stage = method.stages()[-1]          # fine-tune: all three terms
    times = []
    for i in range(iters + 2):
        batch_x = x[torch.randint(len(x), (batch,))]
        t = time.perf_counter()
        loss = total_loss(method({"feature": batch_x}, stage), stage)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:                       # first steps warm up allocators
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):5.1f} ± {100 * sd:3.1f}"


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--full", action="store_true", help="60k training images and the paper's T₁=20, T₂=30")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "bench_cgmcr2"))
    p.add_argument("--threads", type=int, default=0, help="torch threads for the timing (0 = default)")
    p.add_argument("--timing-only", action="store_true", help="only the ms per iteration at batch 512")
    args = p.parse_args(argv)
    overrides = ([] if args.full else ["data.train_samples=10000", "method.warmup_epochs=5",
                                       "method.finetune_epochs=10"]) + extra
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)     # the in-process timing only; training runs in subprocesses
    if args.timing_only:
        print(TIMING_LABEL, f"{ms_per_iteration(overrides):.1f} ms")
        return
    rows = {}
    for seed in args.seeds:
        rows[seed] = train_one(seed, os.path.join(args.out, f"seed{seed}"), overrides)
    ms = ms_per_iteration(overrides)
    print(f"\nCgMCR² on Fashion-MNIST EfficientNet-Lite0 features (1280-d), {'full' if args.full else 'CI'} "
          f"setting {' '.join(overrides)}; scores on the 10,000 test images, mean ± std over seeds "
          f"{args.seeds}, NMI geometric")
    print(f"{'method':<36} {'ACC %':>12} {'NMI %':>12} {'ARI %':>12} {'fit time s':>11}")
    from dist_cluster.methods.cgmcr2.report import NAMES
    for key in METHODS:
        got = [r[key] for r in rows.values() if key in r]
        if not got:
            continue
        t = [g["time_s"] for g in got if g.get("time_s") is not None]
        print(f"{NAMES[key]:<36} {fmt([g['acc'] for g in got]):>12} {fmt([g['nmi'] for g in got]):>12} "
              f"{fmt([g['ari'] for g in got]):>12} {statistics.mean(t) if t else float('nan'):>11.1f}")
    gap = [r["cgmcr2"]["acc"] - r["kmeans"]["acc"] for r in rows.values()]
    print(f"CgMCR² ACC − KMeans ACC: {100 * statistics.mean(gap):+.1f} points (target ≥ +5)")
    print(TIMING_LABEL, f"{ms:.1f} ms")
    summary = {"overrides": overrides, "seeds": args.seeds, "rows": rows, "ms_per_iteration_bs512": ms}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
