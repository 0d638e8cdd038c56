"""FEC: parameters and multiply-adds beside the paper's Table 1; inference FPS and training img/s beside timm
resnet50 in the same run, as a ratio to set against the paper's (V100 FPS: FEC-S/R50 0.86, FEC-L/R50 0.28).

Sizes are counted at 224×224 (FLOPs by torch.utils.flop_counter, halved: the paper counts multiply-adds;
params as numel/2²⁰, the paper's unit); exactness: within 5% of the paper. Inference is the paper's script:
eval mode, no grad, batch 256 at 224 px, 20 warm-up then 100 timed iterations. Training is forward + backward
of cross-entropy. bf16 means the model itself in bf16, as DeepSpeed's bf16 mode runs it. On a CPU the
defaults are smaller (64 px, batch 32, 1 + 3 iterations, fp32). On a GPU fp32 runs with TF32, as training
does, and batches are channels_last, as the engine passes them. Every repeat times its own warm-up and
iterations (--repeats 1 keeps a GPU run to a few minutes). Set them here:

    python -m dist_cluster.bench.fec --px 64 --batch 32 --repeats 3 --dtypes fp32
    python -m dist_cluster.bench.fec --device cuda --repeats 1   # FEC-S and FEC-L, 224 px, batch 256 (FEC-L
                                                                 # trains at 128), fp32 and bf16
"""
from __future__ import annotations

import argparse
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
PAPER_FPS = {"fec_small": 1042.9, "fec_base": 754.1, "fec_large": 342.1, "resnet50": 1206.0}   # Table 1, V100
PEER = "resnet50"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def paper_ratio(name: str) -> float:
    return PAPER_FPS[name] / PAPER_FPS[PEER]


def size(name: str, px: int = 224) -> tuple[float, float]:
    import timm
    from torch.utils.flop_counter import FlopCounterMode

    import dist_cluster.models  # noqa: F401  (registers the FEC models with timm)
    m = timm.create_model(name, num_classes=1000).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        m(torch.randn(1, 3, px, px))
    return sum(p.numel() for p in m.parameters()) / 2 ** 20, counter.get_total_flops() / 2e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_loop(name: str, batch: int, px: int, device, dtype, train: bool, iters: int, warmup: int):
    """A callable: `warmup` untimed then `iters` timed iterations of one model → Measured(images per second)."""
    import timm

    import dist_cluster.models  # noqa: F401
    m = timm.create_model(name, num_classes=1000).to(device, dtype).train(train)
    x = torch.randn(batch, 3, px, px, device=device, dtype=dtype)
    if device.type == "cuda":   # as the engine feeds convolutional methods (parameters keep their layout)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def one():
        if train:
            F.cross_entropy(m(x).float(), y).backward()
            m.zero_grad(set_to_none=True)
        else:
            m(x)

    def run():
        with torch.set_grad_enabled(train):
            for _ in range(warmup):
                one()
            _sync(device)
            t = time.perf_counter()
            for _ in range(iters):
                one()
            _sync(device)
        return Measured(batch * iters / (time.perf_counter() - t))
    return run


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


def settings(opts: Options) -> dict:
    """What to time: --device/--px/--batch/... from opts.extra, else the defaults of the device."""
    e = dict(opts.extra)
    cuda = e.get("device", "cuda" if torch.cuda.is_available() else "cpu") == "cuda"
    default_models = ["fec_small"] if opts.quick else (["fec_small", "fec_large"] if cuda else ["fec_small"])
    px, batch = (64, 2) if opts.quick else ((224, 256) if cuda else (64, 32))
    return dict(device=torch.device("cuda" if cuda else "cpu"), models=e.get("models") or default_models,
                px=e.get("px") or px, batch=e.get("batch") or batch, train_batch=e.get("train_batch"),
                iters=e.get("iters") or (1 if opts.quick else 100 if cuda else 3),
                warmup=e.get("warmup") if e.get("warmup") is not None else (20 if cuda else 1),
                dtypes=e.get("dtypes") or (["fp32", "bf16"] if cuda else ["fp32"]))


def speed_rows(opts: Options) -> list[Row]:
    s = settings(opts)
    dev, px, rows = s["device"], s["px"], []
    if dev.type == "cuda":   # what training sets (dist_cluster.launch), and timm's benchmark script
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    where = "1 GPU" if dev.type == "cuda" else f"1×{opts.threads}"
    for name in s["models"]:
        ratio = paper_ratio(name)
        for dt in s["dtypes"]:
            for train in (False, True):
                b = s["batch"] if not train else (s["train_batch"] or (128 if name == "fec_large" and
                                                                       dev.type == "cuda" else s["batch"]))
                med, _ = paired({n: timed_loop(n, b, px, dev, DTYPES[dt], train, s["iters"], s["warmup"])
                                 for n in (name, PEER)}, opts.repeats, pause=0.0 if dev.type == "cuda" else opts.pause)
                what = f"{name} {'train fwd+bwd' if train else 'inference'} {px}px batch {b} {dt} ({dev.type})"
                paper_like = dev.type == "cuda" and px == 224 and not train
                rows.append(Row("fec", what, where, med[name], f"timm {PEER}", med[PEER],
                                f"≥{ratio:.2f}" if paper_like else "", note=f"paper V100 FPS ratio {ratio:.2f}",
                                unit="img/s"))
    return rows


def run(opts: Options) -> list[Row]:
    torch.set_num_threads(opts.threads)
    rows = []
    for name in (["fec_small"] if opts.quick else ["fec_small", "fec_base", "fec_large"]):
        mi, gmacs = size(name)
        ok = abs(mi / PAPER[name][0] - 1) <= 0.05
        rows.append(Row("fec", f"{name} parameters", "-", mi, "paper Table 1", PAPER[name][0], "", ok,
                        f"{gmacs:.2f} GMACs (paper {PAPER[name][1]})", "Mi"))
    rows += speed_rows(opts)
    fmnist = "/usr/share/datasets/fashion-mnist"
    if not opts.quick and not opts.extra and os.path.isdir(fmnist):
        ours, ref = fmnist_row("fec_small"), fmnist_row("resnet18")
        rows.append(Row("fec", "Fashion-MNIST 64px, 3 epochs on 2000 images: test top-1", "1", ours["top1"],
                        "resnet18, same recipe", ref["top1"], unit=""))
    return rows


def main(argv=None) -> int:
    from dist_cluster.bench import report
    p = argparse.ArgumentParser(prog="python -m dist_cluster.bench.fec", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="+", choices=["fec_small", "fec_base", "fec_large"])
    p.add_argument("--px", type=int, help="image side (224 on a GPU, 64 on a CPU)")
    p.add_argument("--batch", type=int, help="inference batch, and training batch unless --train-batch")
    p.add_argument("--train-batch", type=int, help="training batch (GPU default: 256, FEC-L 128)")
    p.add_argument("--iters", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 2))
    p.add_argument("--out", default="runs/bench")
    a = p.parse_args(argv)
    extra = {k: v for k, v in vars(a).items() if k not in ("repeats", "threads", "out") and v is not None}
    opts = Options(repeats=a.repeats, threads=a.threads, out=a.out, extra=extra)
    torch.set_num_threads(opts.threads)
    rows = speed_rows(opts)
    report.append_jsonl(rows, opts.out, quick=False)
    print(report.table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
