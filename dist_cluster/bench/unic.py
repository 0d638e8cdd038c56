"""UNIC's neighbour mining (exact kNN, second-order cleaning) on 1 and 2 processes.

Full: all 70,000 Fashion-MNIST images as 784-d pixels (a same-shaped stand-in when not installed), τ1 = 10,
τ2 = 1000, L2; quick: 2,000 random 32-d points, τ1 = 5, τ2 = 50. Exactness: the 2-process positives and
clean mask equal the 1-process ones.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from dist_cluster.bench.registry import Options, Row
from dist_cluster.distributed import barrier


def _mine(rank, world, x, tau1, tau2, repeats):

    from dist_cluster.neighbors import mine_neighbors
    rows = torch.arange(rank, len(x), world)
    times = []
    for _ in range(repeats):
        barrier()
        t = time.perf_counter()
        res = mine_neighbors(x[rows], tau1, tau2, index=rows, eta_quantile=0.6, keep_features=False)
        barrier()
        times.append(time.perf_counter() - t)
    return times, rows, res.positives, res.clean


def run(opts: Options) -> list[Row]:
    from dist_cluster.distributed.spawn import run_world
    if opts.quick:
        x, tau1, tau2, name = torch.randn(2000, 32, generator=torch.Generator().manual_seed(0)), 5, 50, "random"
    else:
        from dist_cluster.bench.kmeans import fmnist_pixels
        name, arr = fmnist_pixels()
        x, tau1, tau2 = torch.from_numpy(arr), 10, 1000
    def world(w):
        if w == 1 and opts.quick:       # only the lists count: the 1-process ones need no process of their own
            return [_mine(0, 1, x, tau1, tau2, opts.repeats)]
        return run_world(_mine, w, x, tau1, tau2, opts.repeats, threads=max(1, opts.threads // w))
    results = {w: world(w) for w in sorted(set(opts.procs) | {1})}
    one = results[1][0]
    base = float(np.median(one[0]))
    what = f"neighbour mining, {name} {tuple(x.shape)}, τ1={tau1} τ2={tau2}"
    rows = [Row("unic", what, f"1×{opts.threads}", base, note="exact kNN + cleaning")]
    for w, per_rank in results.items():
        if w == 1:
            continue
        _, _, pos, clean = per_rank[0]         # every rank returns the whole data set's lists
        same = torch.equal(pos, one[2]) and torch.equal(clean, one[3])
        t = float(np.median(np.max([pr[0] for pr in per_rank], axis=0)))
        rows.append(Row("unic", what, f"{w}×{max(1, opts.threads // w)}", t, f"ours 1×{opts.threads}", base,
                        "" if opts.quick else "≤0.65", same, "lists and clean mask = 1 process" if same else ""))
    return rows
