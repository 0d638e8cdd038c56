"""What the GPU cases share: the device, timed calls that wait for it, its measured matmul rates, faiss-gpu.

A row's share of the matmul rate is (the operation's GEMM flops / its time) ÷ the rate of one large GEMM in
the same precision measured in the same run (float32 with TF32 off, as the exact searches run).
"""
from __future__ import annotations

from typing import Callable

import torch

from dist_cluster.precision import exact_float32


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device (torch.cuda.is_available() is False)")
    return torch.device("cuda")


def synced(fn: Callable) -> Callable:
    """fn followed by a device synchronisation, so that a wall-clock timer sees the whole of its work."""
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    return run


def matmul_rate(dtype: torch.dtype, device: torch.device, n: int = 8192, reps: int = 5) -> float:
    """Flop/s of an n×n×n GEMM in dtype (float32: TF32 off), the median of reps timed with CUDA events."""
    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, device=device, dtype=dtype, generator=g) for _ in range(2))
    c = torch.empty_like(a)
    times = []
    with exact_float32():
        torch.mm(a, b, out=c)
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.mm(a, b, out=c)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
    return 2 * n ** 3 / sorted(times)[len(times) // 2]


def faiss_gpu():
    """faiss with GPU support and a GPU to run on, else None."""
    try:
        import faiss
    except ImportError:
        return None
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    return faiss


def rate_note(flops: float, seconds: float, rate: float, what: str) -> tuple[float, str]:
    """(share of the matmul rate, a note saying both rates)."""
    got = flops / seconds
    return got / rate, f"{got / 1e12:.3g} of {rate / 1e12:.3g} TFLOP/s ({what} GEMM)"
