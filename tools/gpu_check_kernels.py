"""Kernel rows of tools/gpu_check.py: ours against the plain torch code a user would write instead."""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F


def median_ms(fn, device, reps: int = 3, warmup: int = 1) -> float:
    """Median milliseconds of fn() over reps calls after warmup calls (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def knn_row(device, s) -> dict:
    from dist_cluster.neighbors import knn
    n, d = s["knn"]
    g = torch.Generator(device=device).manual_seed(0)
    x = F.normalize(torch.randn(n, d, device=device, generator=g), dim=1)
    x = x.half() if device.type == "cuda" else x
    out = {}

    def ours():
        out["nb"] = knn(x, 10, metric="cosine", self_first=False)

    def plain():
        for a in range(0, n, 4096):
            (x[a:a + 4096] @ x.T).topk(10, dim=1)
    t_ours, t_plain = median_ms(ours, device), median_ms(plain, device)
    sample = torch.randperm(n, device=device, generator=g)[:1000]
    ref = (x[sample].float() @ x.float().T).topk(10, dim=1).indices
    same = (out["nb"].index[sample].sort(1).values == ref.sort(1).values).all(1).float().mean().item()
    return dict(result=f"{t_ours / 1e3:.3g} s / {t_plain / 1e3:.3g} s ({t_ours / t_plain:.1f}×); {same:.1%} of "
                       f"sampled lists = fp32 brute force", status="ok" if same >= 0.99 else "FAIL",
                reference="first GPU run, 200,000×768 fp16: 3.66 s / 0.37 s")


def kmeans_row(device, s) -> dict:
    from dist_cluster.bench.gpu_kmeans import plain_lloyd
    from dist_cluster.clustering import kmeans
    n, d, k = s["kmeans"]
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, d, device=device, generator=g)
    init = x[torch.randperm(n, device=device, generator=g)[:k]].clone()
    out = {}

    def ours():
        out["ours"] = kmeans(x, k, init=init, max_iter=20, tol=0.0)

    def plain():   # the bench's plain Lloyd loop: float32 without TF32, as kmeans() computes
        out["plain"] = plain_lloyd(x, init, 20)
    t_ours, t_plain = median_ms(ours, device), median_ms(plain, device)
    rel = abs(out["ours"].inertia / out["plain"] - 1)
    iters = out["ours"].n_iter
    return dict(result=f"{t_ours / 1e3:.3g} s / {t_plain / 1e3:.3g} s ({t_ours / t_plain:.2f}×), {iters} iterations, "
                       f"Δinertia {rel:.1e}", status="ok" if rel < 1e-3 else "FAIL",
                reference="first GPU run: 0.292 s / 0.325 s")


def loop_rc(z, pi, eps: float):
    """Rc as the reference code writes it: one logdet per cluster."""
    n, d = z.shape
    eye = torch.eye(d, device=z.device)
    rc = z.new_zeros(())
    for j in range(pi.shape[1]):
        t = pi[:, j].sum() + 1e-8
        rc = rc + t / (2 * n) * torch.logdet(eye + d / (t * eps * eps) * (z.T * pi[:, j]) @ z)
    return rc


def rc_row(device, s) -> dict:
    from dist_cluster.objectives.coding_rate import cluster_coding_rate
    n, d, k = s["rc"]
    g = torch.Generator(device=device).manual_seed(0)
    z = F.normalize(torch.randn(n, d, device=device, generator=g), dim=1).requires_grad_()
    pi = torch.softmax(torch.randn(n, k, device=device, generator=g), dim=1).requires_grad_()
    val = {}

    def step(name, fn):
        z.grad = pi.grad = None
        v = fn(z, pi, 0.5)
        v.backward()
        val[name] = float(v.detach())
    t_ours = median_ms(lambda: step("ours", cluster_coding_rate), device)
    t_loop = median_ms(lambda: step("loop", loop_rc), device)
    rel = abs(val["ours"] / val["loop"] - 1)
    return dict(result=f"{t_ours:.3g} ms / {t_loop:.3g} ms ({t_loop / t_ours:.0f}× faster), Rc {val['ours']:.5g}, "
                       f"Δ {rel:.1e}", status="ok" if rel < 1e-3 else "FAIL")


KERNELS = {"knn": knn_row, "kmeans": kmeans_row, "rc": rc_row}
