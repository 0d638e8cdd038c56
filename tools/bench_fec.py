"""FEC benchmarks, printed as tables:

1. parameters and GFLOPs of FEC-S/B/L beside the paper's Table 1 (FLOPs counted by torch.utils.flop_counter;
   the paper's "FLOPs" are multiply-adds, so the count is halved; params also as numel/2^20, the paper's unit);
2. training throughput (forward + backward, img/s) of FEC-S/B/L and timm resnet18/resnet50 at 224×224 in the
   same run (CPU here; on CUDA also bf16-autocast training and the paper's fp32 inference at batch 256);
3. short Fashion-MNIST training: FEC-Small beside resnet18 trained by the same recipe (recipes/fec_small.py
   with data=fmnist and method.model swapped), train top-1 of the last epoch, top-1/top-5 on the test split.

    python tools/bench_fec.py [--batch 4] [--iters 2] [--skip-throughput] [--skip-train] [--train-epochs 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import dist_cluster.models  # noqa: E402,F401

PAPER = {  # Table 1: params (M, = numel/2^20), GFLOPs (MACs), top-1, img/s (V100, batch 256)
    "fec_small": (5.5, 1.4, 72.7, 1042.9), "fec_base": (14.4, 3.4, 78.1, 754.1),
    "fec_large": (28.3, 6.5, 81.2, 342.1), "resnet18": (12, 1.8, 69.8, 4284.9), "resnet50": (26, 4.1, 79.8, 1206.0),
}
MODELS = ["fec_small", "fec_base", "fec_large", "resnet18", "resnet50"]


def size_table(models=MODELS, size: int = 224) -> list[dict]:
    rows = []
    for name in models:
        m = timm.create_model(name, num_classes=1000).eval()
        n = sum(p.numel() for p in m.parameters())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            m(torch.randn(1, 3, size, size))
        p = PAPER[name]
        rows.append(dict(model=name, numel=n, params_M=n / 1e6, params_Mi=n / 2 ** 20, paper_params=p[0],
                         gmacs=counter.get_total_flops() / 2e9, paper_gflops=p[1]))
    return rows


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_throughput(name: str, batch: int, iters: int, warmup: int, device, size: int = 224,
                     dtype: torch.dtype | None = None) -> float:
    m = timm.create_model(name, num_classes=1000).to(device).train()
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    times = []
    for i in range(warmup + iters):
        _sync(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(m(x), y)
        loss.backward()
        m.zero_grad(set_to_none=True)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return batch * len(times) / sum(times)


@torch.no_grad()
def infer_throughput(name: str, batch: int, iters: int, warmup: int, device, size: int = 224) -> float:
    m = timm.create_model(name, num_classes=1000).to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    for _ in range(warmup):
        m(x)
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        m(x)
    _sync(device)
    return batch * iters / (time.perf_counter() - t)


def throughput_table(batch: int, iters: int, warmup: int, models=MODELS) -> list[dict]:
    rows = []
    cuda = torch.cuda.is_available()
    for name in models:
        row = dict(model=name, cpu_train=train_throughput(name, batch, iters, warmup, torch.device("cpu")))
        if cuda:
            dev = torch.device("cuda")
            row["gpu_train_fp32"] = train_throughput(name, 64, 20, 5, dev)
            row["gpu_train_bf16"] = train_throughput(name, 64, 20, 5, dev, dtype=torch.bfloat16)
            row["gpu_infer_fp32_bs256"] = infer_throughput(name, 256, 100, 20, dev)   # the paper's protocol
        row["paper_fps"] = PAPER[name][3]
        rows.append(row)
        print(f"  measured {name}: " + ", ".join(f"{k}={v:.1f}" for k, v in row.items() if isinstance(v, float)),
              flush=True)
    return rows


def fmnist_run(model: str, args) -> dict:
    """One short run of recipes/fec_small.py on Fashion-MNIST with `method.model` swapped; returns its figures."""
    import json
    import subprocess
    run_dir = os.path.join(args.run_root, f"fmnist_{model}")
    overrides = ["data=fmnist", f"data.image_size={args.image_size}", f"data.train_samples={args.train_samples}",
                 f"data.eval_samples={args.eval_samples}", f"data.batch_size={args.train_batch}",
                 "data.num_workers=0", "data.auto_augment=", "data.re_prob=0", f"method.model={model}",
                 "method.num_classes=10", f"method.epochs={args.train_epochs}", "method.mixup=0", "method.cutmix=0",
                 "method.ema=false", "sched.warmup_epochs=0", "sched.cooldown_epochs=0", "engine.eval_every=0",
                 "engine.progress=false", "engine.log_every=5", "ckpt.resume=false", f"run_dir={run_dir}"]
    if not model.startswith("fec"):
        overrides.append("method.figure_photos=[]")
    recipe = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "fec_small.py")
    t = time.time()
    subprocess.run([sys.executable, recipe, *overrides], check=True, env=dict(os.environ, DS_ACCELERATOR="cpu"))
    wall = time.time() - t
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    train = [r for r in map(json.loads, open(os.path.join(run_dir, "metrics.jsonl"))) if r["kind"] == "train"]
    last = [r["train_top1"] for r in train if r["epoch"] == args.train_epochs - 1]
    m = summary["metrics"]
    return dict(model=model, epochs=args.train_epochs, train_images=args.train_samples,
                last_epoch_train_top1=sum(last) / max(len(last), 1), test_top1=m["top1"], test_top5=m["top5"],
                test_images=int(m["eval_samples"]), wall_s=wall, figures=" ".join(summary.get("figures", [])) or "-")


def fmnist_table(args) -> list[dict]:
    return [fmnist_run(model, args) for model in ("fec_small", "resnet18")]


def print_table(rows: list[dict], title: str) -> None:
    cols = list(rows[0])
    fmt = lambda v: f"{v:,}" if isinstance(v, int) else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    print(f"\n{title}\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="CPU batch for the throughput table")
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--train-epochs", type=int, default=3)
    p.add_argument("--train-samples", type=int, default=2000, help="first N Fashion-MNIST training images")
    p.add_argument("--eval-samples", type=int, default=2000, help="first N test images (0 = all 10,000)")
    p.add_argument("--train-batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=64, help="grey 28×28 resized (FEC needs a multiple of 32)")
    p.add_argument("--run-root", default="runs/bench_fec")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print_table(size_table(), "Parameters and multiply-adds at 224×224 (paper Table 1 beside)")
    if not args.skip_throughput:
        print(f"\nthroughput: CPU batch {args.batch}, mean of {args.iters} iterations after {args.warmup} warm-up")
        print_table(throughput_table(args.batch, args.iters, args.warmup), "Training throughput, img/s at 224×224")
    if not args.skip_train:
        print_table(fmnist_table(args), f"Fashion-MNIST at {args.image_size} px, recipes/fec_small.py for both "
                    f"(AdamW 1e-3, cosine, smoothing 0.1, drop path 0.1; RandAugment/erasing/Mixup/EMA off for a "
                    f"short run), batch {args.train_batch}")


if __name__ == "__main__":
    main()
