"""The timed rows of tools/gpu_check.py, run in one worker process while nothing else uses the device:
`python tools/gpu_check_timed.py DEVICE SIZE KEY...` prints `GPU_CHECK START key` and `GPU_CHECK ROW {json}`.

Kernels (kNN, k-means, coding rate) against plain torch, inference FPS the paper's way (eval mode, no grad,
batch 256, warm-up, then timed batches) with the ratio to timm's resnet50, and training images/s.
Each time is the median of 3, measured with CUDA events (perf_counter on CPU).
"""
from __future__ import annotations

import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("resnet50", "fec_small", "fec_base", "fec_large")          # resnet50 first: the ratios need it
FIRST_RUN = {("fec_small", "bf16"): 1718, ("fec_small", "fp32"): 1841, ("fec_large", "bf16"): 613,
             ("fec_large", "fp32"): 489, ("resnet50", "bf16"): 3982, ("resnet50", "fp32"): 2978}   # H200 train
# full: the GPU sizes; tiny: the CPU dry run's
SIZES = {"full": dict(knn=(100_000, 768), kmeans=(1_000_000, 128, 1000), rc=(4096, 128, 1000), image=224,
                      infer_batch=256, train_batch={"fec_large": 128}, batch=256, iters=5, cgmcr2=512),
         "tiny": dict(knn=(3000, 64), kmeans=(20_000, 16, 50), rc=(256, 32, 10), image=32, infer_batch=2,
                      train_batch={}, batch=2, iters=1, cgmcr2=16)}


def plan(size: str) -> dict[str, tuple[str, str]]:
    """key -> (section, check name), in the order the rows run (no torch import: the harness names rows)."""
    s = SIZES[size]
    (n, d), (kn, kd, kk), (rn, rd, rk) = s["knn"], s["kmeans"], s["rc"]
    rows = {"knn": ("kernel", f"exact kNN {n:,}×{d}, k 10: knn() / plain (q @ X.T).topk"),
            "kmeans": ("kernel", f"k-means {kn:,}×{kd}, k {kk}, 20 iterations: kmeans() / plain Lloyd"),
            "rc": ("kernel", f"coding rate Rc, n {rn}, d {rd}, k {rk}, fwd+bwd: ours / per-cluster logdet loop")}
    precisions = ("bf16", "fp32") if size == "full" else ("fp32",)
    models = MODELS if size == "full" else ("resnet50", "fec_small")
    for m in models:
        for p in precisions:
            rows[f"fps:{m}:{p}"] = ("fps", f"{m} inference {p}, batch {s['infer_batch']}")
    for m in models:
        for p in precisions:
            rows[f"train:{m}:{p}"] = ("train", f"{m} training {p}, batch {s['train_batch'].get(m, s['batch'])}")
    rows["cgmcr2"] = ("train", f"CgMCR² iteration, batch {s['cgmcr2']}")
    return rows


def main() -> None:
    import torch
    device, size, keys = torch.device(sys.argv[1]), sys.argv[2], sys.argv[3:]
    sys.path.insert(0, ROOT)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True   # as the engine does
        torch.backends.cudnn.benchmark = True
    from gpu_check_kernels import KERNELS
    from gpu_check_models import cgmcr2_iteration, inference_fps, train_rate
    names, fps = plan(size), {}
    if device.type == "cuda":
        torch.zeros(1, device=device)          # CUDA's start-up while the data is written
    quiet = os.environ.get("GPU_CHECK_AFTER", "")
    for _ in range(300):                       # time nothing while the data writer still uses the CPUs
        if not quiet or os.path.exists(quiet):
            break
        time.sleep(0.1)
    for key in keys:
        print(f"GPU_CHECK START {key}", flush=True)
        t = time.monotonic()
        row = {"key": key, "section": names[key][0], "check": names[key][1]}
        try:
            kind, *rest = key.split(":")
            if kind in KERNELS:
                out = KERNELS[kind](device, SIZES[size])
            elif kind == "fps":
                out = inference_fps(*rest, device, SIZES[size], fps)
            elif kind == "train":
                out = train_rate(*rest, device, SIZES[size], FIRST_RUN.get(tuple(rest)))
            else:
                out = cgmcr2_iteration(device, SIZES[size]["cgmcr2"])
            row.update(out)
        except Exception as e:   # one failed row must not hide the others
            msg = str(e).strip().splitlines()
            row.update(status="FAIL", error=f"{type(e).__name__}: {msg[-1][:200] if msg else ''}")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        row["seconds"] = round(time.monotonic() - t, 1)
        print("GPU_CHECK ROW " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
