"""Forward + backward of the coding-rate loss −R(Z) + Rc(Z, Π) against the reference code's per-cluster loop.

Ours: batched Cholesky with clusters chunked (dist_cluster.objectives.coding_rate); peer: one torch.logdet
per cluster. With 2 processes the k clusters' rows are sharded over gloo ranks (the slowest rank's time,
against ours on 1 process). Exactness: the two losses agree to 1e-4 relative (float32).
"""
from __future__ import annotations

import time

import torch

from dist_cluster.bench.registry import Options, Row
from dist_cluster.bench.timer import paired
from dist_cluster.distributed import barrier


def inputs(n: int, d: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1).requires_grad_(True)
    pi = torch.softmax(torch.randn(n, k, generator=g), dim=1).requires_grad_(True)
    return z, pi


def reference_loop(z, pi, eps):
    n, d = z.shape
    eye = torch.eye(d)
    r = 0.5 * torch.logdet(eye + d / (n * eps * eps) * z.T @ z)
    rc = 0.0
    for j in range(pi.shape[1]):
        t = pi[:, j].sum() + 1e-8
        rc = rc + t / (2 * n) * torch.logdet(eye + d / (t * eps * eps) * (z.T * pi[:, j]) @ z)
    return rc - r


def ours(z, pi, eps):
    from dist_cluster.objectives.coding_rate import cluster_coding_rate, coding_rate
    return cluster_coding_rate(z, pi, eps) - coding_rate(z, eps)


def _step(fn, z, pi):
    z.grad = pi.grad = None
    loss = fn(z, pi, 0.5)
    loss.backward()
    return float(loss.detach())


def _on_rank(rank, world, n, d, k, repeats):
    z_all, pi_all = inputs(n, d, k)
    rows = slice(rank * n // world, (rank + 1) * n // world)
    z, pi = z_all.detach()[rows].clone().requires_grad_(True), pi_all.detach()[rows].clone().requires_grad_(True)
    times = []
    for _ in range(repeats):
        barrier()
        t = time.perf_counter()
        _step(ours, z, pi)
        times.append(time.perf_counter() - t)
    return times


def run(opts: Options) -> list[Row]:
    import statistics

    from dist_cluster.distributed.spawn import run_world
    torch.set_num_threads(opts.threads)
    grid = [(256, 32, 10)] if opts.quick else [(n, 128, k) for n in (512, 2048) for k in (10, 100, 1000)]
    rows = []
    for n, d, k in grid:
        z, pi = inputs(n, d, k)
        med, last = paired({"ours": lambda: _step(ours, z, pi), "loop": lambda: _step(reference_loop, z, pi)},
                           opts.repeats)
        exact = abs(last["ours"] - last["loop"]) <= 1e-4 * max(1.0, abs(last["loop"]))
        what = f"coding-rate loss fwd+bwd, n={n} d={d} k={k}"
        rows.append(Row("coding_rate", what, f"1×{opts.threads}", med["ours"], "per-cluster logdet loop",
                        med["loop"], "" if opts.quick else "≤1.0", exact, f"loss {last['ours']:.5g}"))
        for world in [w for w in opts.procs if w > 1]:
            per_rank = run_world(_on_rank, world, n, d, k, opts.repeats, threads=max(1, opts.threads // world))
            t = statistics.median(max(ts) for ts in zip(*per_rank))
            rows.append(Row("coding_rate", what, f"{world}×{max(1, opts.threads // world)}", t,
                            f"ours 1×{opts.threads}", med["ours"], note="rows sharded over gloo ranks"))
    return rows
