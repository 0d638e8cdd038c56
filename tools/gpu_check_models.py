"""Model rows of tools/gpu_check.py: inference FPS as the paper measures it, training images/s, a CgMCR² step."""
from __future__ import annotations

from contextlib import nullcontext

import torch
from gpu_check_kernels import median_ms

PAPER_FPS = {"resnet50": 1206.0, "fec_small": 1042.9, "fec_base": 754.1, "fec_large": 342.1}   # V100, b256


def _model(name: str, device):
    import timm

    import dist_cluster.models  # noqa: F401  (registers fec_small/base/large with timm)
    model = timm.create_model(name, num_classes=1000).to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def _images(b: int, size: int, device):
    x = torch.randn(b, 3, size, size, device=device)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def _autocast(device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def inference_fps(name: str, precision: str, device, s: dict, seen: dict) -> dict:
    """The paper's throughput (DeiT/Swin script): eval mode, no grad, one batch repeated; `iters` batches of
    warm-up, then the median of 3 runs of `iters` batches. `seen` keeps resnet50's rate for the ratios."""
    model, b = _model(name, device).eval(), s["infer_batch"]
    x = _images(b, s["image"], device)

    def batches():
        with torch.inference_mode(), _autocast(device, precision):
            for _ in range(s["iters"]):
                model(x)
    rate = b * s["iters"] * 1000 / median_ms(batches, device)
    seen[(name, precision)] = rate
    base = seen.get(("resnet50", precision))
    paper = PAPER_FPS[name] / PAPER_FPS["resnet50"]
    if name == "resnet50":
        return dict(result=f"{rate:.0f} img/s", reference=f"paper (V100, fp32): {PAPER_FPS[name]} img/s")
    ratio = f", {rate / base:.2f}× resnet50" if base else ""
    return dict(result=f"{rate:.0f} img/s{ratio}",
                reference=f"paper (V100, fp32): {PAPER_FPS[name]} img/s = {paper:.2f}× resnet50")


def train_rate(name: str, precision: str, device, s: dict, first_run: int | None) -> dict:
    """Training images/s: forward, cross-entropy, backward, AdamW step; median of 3 runs of `iters` steps."""
    model, b = _model(name, device).train(), s["train_batch"].get(name, s["batch"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = _images(b, s["image"], device), torch.randint(0, 1000, (b,), device=device)

    def steps():
        for _ in range(s["iters"]):
            with _autocast(device, precision):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    rate = b * s["iters"] * 1000 / median_ms(steps, device)
    return dict(result=f"{rate:.0f} img/s", reference=f"first GPU run (H200): {first_run} img/s" if first_run else "")


def cgmcr2_iteration(device, batch: int) -> dict:
    from dist_cluster.config import ExperimentConfig
    from dist_cluster.launch import build_method
    from dist_cluster.methods.base import total_loss
    from dist_cluster.methods.cgmcr2.config import CgMCR2Config
    method = build_method(ExperimentConfig(method=CgMCR2Config(in_dim=768, k=10))).to(device).train()
    stage = method.stages()[-1]
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)
    batch = {"feature": torch.randn(batch, 768, device=device), "index": torch.arange(batch, device=device),
             "label": torch.zeros(batch, dtype=torch.long, device=device)}

    def step():
        total_loss(method(batch, stage), stage).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    warm = 3 if device.type == "cuda" else 1
    return dict(result=f"{median_ms(step, device, warmup=warm):.1f} ms",
                reference="paper (3080 Ti, batch 512): 22.9 ms")
