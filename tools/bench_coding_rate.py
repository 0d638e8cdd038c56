#!/usr/bin/env python
"""Forward + backward time of the coding-rate loss −R(Z) + Rc(Z, Π) against batch size n and clusters k.

  python tools/bench_coding_rate.py                       # n ∈ {512, 2048}, k ∈ {10, 100, 1000}, d = 128
  python tools/bench_coding_rate.py --n 512 3000 --k 1000 --d 256 --world 2

Columns: ours (batched Cholesky, clusters chunked) on one process; the reference code's per-cluster loop
(torch.logdet of each I + c·ZᵀΠ_jZ); with --world W, the slowest rank's time when the k clusters are
sharded over W gloo ranks (same machine, so the ranks share its cores). float32, median of --repeats.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import torch  # noqa: E402

from dist_cluster.objectives.coding_rate import cluster_coding_rate, coding_rate  # noqa: E402


def inputs(n: int, d: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1).requires_grad_(True)
    pi = torch.softmax(torch.randn(n, k, generator=g), dim=1).requires_grad_(True)
    return z, pi


def reference_loop(z, pi, eps):
    """The reference code's loss: one torch.logdet per cluster."""
    n, d = z.shape
    eye = torch.eye(d)
    r = 0.5 * torch.logdet(eye + d / (n * eps * eps) * z.T @ z)
    rc = 0.0
    for j in range(pi.shape[1]):
        t = pi[:, j].sum() + 1e-8
        rc = rc + t / (2 * n) * torch.logdet(eye + d / (t * eps * eps) * (z.T * pi[:, j]) @ z)
    return rc - r


def ours(z, pi, eps):
    return cluster_coding_rate(z, pi, eps) - coding_rate(z, eps)


def timed(fn, z, pi, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        z.grad = pi.grad = None
        t = time.perf_counter()
        fn(z, pi, 0.5).backward()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def _rank(rank, world, n, d, k, repeats):
    z_all, pi_all = inputs(n, d, k)
    rows = slice(rank * n // world, (rank + 1) * n // world)
    z, pi = z_all.detach()[rows].clone().requires_grad_(True), pi_all.detach()[rows].clone().requires_grad_(True)
    import torch.distributed as dist
    ms = []
    for _ in range(repeats):
        z.grad = pi.grad = None
        dist.barrier()
        t = time.perf_counter()
        ours(z, pi, 0.5).backward()
        ms.append((time.perf_counter() - t) * 1000)
    return statistics.median(ms)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--k", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--world", type=int, default=0, help="also time the cluster-sharded loss on W gloo ranks")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--skip-reference-above", type=int, default=1000, help="skip the per-cluster loop above this k")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    head = f"{'n':>6} {'k':>6} {'d':>5} {'ours ms':>10} {'ref loop ms':>12} {'speed-up':>9}"
    if args.world:
        head += f" {f'{args.world} ranks ms':>12}"
    print(f"coding-rate loss −R + Rc, forward + backward, float32, torch threads {torch.get_num_threads()}")
    print(head)
    for n in args.n:
        for k in args.k:
            z, pi = inputs(n, args.d, k)
            t_ours = timed(ours, z, pi, args.repeats)
            t_ref = timed(reference_loop, z, pi, args.repeats) if k <= args.skip_reference_above else float("nan")
            line = f"{n:>6} {k:>6} {args.d:>5} {t_ours:>10.1f} {t_ref:>12.1f} {t_ref / t_ours:>9.2f}"
            if args.world:
                from dist_utils import run_world
                line += f" {max(run_world(_rank, args.world, n, args.d, k, args.repeats)):>12.1f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
