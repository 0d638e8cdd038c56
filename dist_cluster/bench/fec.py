"""FEC: parameters and multiply-adds beside the paper's Table 1, and training throughput beside timm ResNets.

Sizes are counted at 224×224 (FLOPs by torch.utils.flop_counter, halved: the paper counts multiply-adds;
params as numel/2²⁰, the paper's unit); exactness: within 5% of the paper. Throughput: forward + backward
img/s at 224×224 (64×64 in quick) against resnet18 in the same run (CPU; on CUDA also bf16 autocast).
Full mode also trains FEC-Small and resnet18 briefly on Fashion-MNIST by recipes/fec_small.py when the data
are installed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from dist_cluster.bench.registry import Options, Row
from dist_cluster.bench.timer import Measured, paired

PAPER = {"fec_small": (5.5, 1.4), "fec_base": (14.4, 3.4), "fec_large": (28.3, 6.5), "resnet18": (12, 1.8),
         "resnet50": (26, 4.1)}     # Table 1: params (numel / 2^20), GFLOPs (multiply-adds)


def size(name: str, px: int = 224) -> tuple[float, float]:
    import timm
    from torch.utils.flop_counter import FlopCounterMode

    import dist_cluster.models  # noqa: F401  (registers the FEC models with timm)
    m = timm.create_model(name, num_classes=1000).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        m(torch.randn(1, 3, px, px))
    return sum(p.numel() for p in m.parameters()) / 2 ** 20, counter.get_total_flops() / 2e9


def train_step(name: str, batch: int, px: int, device, dtype=None):
    import timm
    m = timm.create_model(name, num_classes=1000).to(device).train()
    x, y = torch.randn(batch, 3, px, px, device=device), torch.randint(0, 1000, (batch,), device=device)

    def step():
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(m(x), y)
        loss.backward()
        m.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return Measured(batch / (time.perf_counter() - t))
    step()                      # warm-up
    return step


def fmnist_row(model: str, epochs: int = 3) -> dict:
    run_dir = os.path.join("runs", "bench_fec", f"fmnist_{model}")
    ov = ["data=fmnist", "data.image_size=64", "data.train_samples=2000", "data.eval_samples=2000",
          "data.batch_size=64", "data.num_workers=0", "data.auto_augment=", "data.re_prob=0", f"method.model={model}",
          "method.num_classes=10", f"method.epochs={epochs}", "method.mixup=0", "method.cutmix=0", "method.ema=false",
          "sched.warmup_epochs=0", "sched.cooldown_epochs=0", "engine.eval_every=0", "engine.progress=false",
          "ckpt.resume=false", f"run_dir={run_dir}"] + ([] if model.startswith("fec") else ["method.figure_photos=[]"])
    subprocess.run([sys.executable, os.path.join("recipes", "fec_small.py"), *ov], check=True,
                   env=dict(os.environ, DS_ACCELERATOR="cpu"), capture_output=True)
    return json.load(open(os.path.join(run_dir, "summary.json")))["metrics"]


def run(opts: Options) -> list[Row]:
    torch.set_num_threads(opts.threads)
    models = ["fec_small"] if opts.quick else ["fec_small", "fec_base", "fec_large"]
    rows = []
    for name in models:
        mi, gmacs = size(name)
        ok = abs(mi / PAPER[name][0] - 1) <= 0.05
        rows.append(Row("fec", f"{name} parameters", "-", mi, "paper Table 1", PAPER[name][0], "", ok,
                        f"{gmacs:.2f} GMACs (paper {PAPER[name][1]})", "Mi"))
    px, batch = (64, 2) if opts.quick else (224, 4)
    cpu = torch.device("cpu")
    for name in models:
        med, _ = paired({"ours": train_step(name, batch, px, cpu), "ref": train_step("resnet18", batch, px, cpu)},
                        opts.repeats)
        rows.append(Row("fec", f"{name} train fwd+bwd {px}px batch {batch} (CPU)", f"1×{opts.threads}", med["ours"],
                        "timm resnet18", med["ref"], unit="img/s"))
    if torch.cuda.is_available() and not opts.quick:
        dev = torch.device("cuda")
        med, _ = paired({"ours": train_step("fec_small", 64, 224, dev, torch.bfloat16),
                         "ref": train_step("resnet18", 64, 224, dev, torch.bfloat16)}, opts.repeats)
        rows.append(Row("fec", "fec_small train bf16 224px batch 64 (GPU)", "1 GPU", med["ours"], "timm resnet18",
                        med["ref"], unit="img/s"))
    fmnist = "/usr/share/datasets/fashion-mnist"
    if not opts.quick and os.path.isdir(fmnist):
        ours, ref = fmnist_row("fec_small"), fmnist_row("resnet18")
        rows.append(Row("fec", "Fashion-MNIST 64px, 3 epochs on 2000 images: test top-1", "1", ours["top1"],
                        "resnet18, same recipe", ref["top1"], unit=""))
    return rows
