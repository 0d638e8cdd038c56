"""k-means on one GPU: 1M × 128 float32 rows, k = 1000, 20 Lloyd iterations from the same initial centres,
beside the plain torch loop and faiss-gpu.

The plain loop is what a user would write (float32, TF32 off, as ours): per 2^18-row chunk an addmm and an
argmin, then `index_add_` sums and a `bincount`. faiss-gpu, where it imports: faiss.Kmeans(gpu=True) from the
same centres (host rows, as its API takes them). Exactness: our inertia within 1e-4 of the plain loop's. One
more row times score tiles small enough to stay in L2 (2^23 scores) against the default (2^26).
"""
from __future__ import annotations

import torch

from dist_cluster.bench import gpu
from dist_cluster.bench.registry import Options, Row
from dist_cluster.bench.timer import paired
from dist_cluster.precision import exact_float32

ITERS = 20
SIZES = {True: (100_000, 64, 100), False: (1_000_000, 128, 1000)}     # (n, d, k) by opts.quick


@exact_float32()
def plain_lloyd(x: torch.Tensor, c: torch.Tensor, iters: int, chunk: int = 1 << 18) -> float:
    """Lloyd's iterations as plain torch; returns the inertia of the last assignment."""
    for it in range(iters + 1):
        cc = (c * c).sum(1)
        labels = torch.cat([torch.addmm(cc, x[a:a + chunk], c.T, alpha=-2).argmin(1)
                            for a in range(0, len(x), chunk)])
        if it == iters:
            break
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=len(c)).to(x.dtype)
        c = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c)
    return float(sum(((x[a:a + chunk] - c[labels[a:a + chunk]]) ** 2).sum() for a in range(0, len(x), chunk)))


def run(opts: Options) -> list[Row]:
    from dist_cluster.clustering import kmeans
    dev = gpu.require_cuda()
    rate = gpu.matmul_rate(torch.float32, dev)
    n, d, k = SIZES[opts.quick]
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(n, d, device=dev, generator=g)
    init = x[torch.randperm(n, device=dev, generator=g)[:k]].clone()
    fns = {"ours": gpu.synced(lambda: kmeans(x, k, init=init, max_iter=ITERS, tol=0.0)),
           "plain": gpu.synced(lambda: plain_lloyd(x, init, ITERS)),
           "small": gpu.synced(lambda: kmeans(x, k, init=init, max_iter=ITERS, tol=0.0, chunk=(1 << 23) // k))}
    faiss = gpu.faiss_gpu()
    if faiss is not None:
        host, c0 = x.cpu().numpy(), init.cpu().numpy()
        fns["faiss"] = lambda: faiss.Kmeans(d, k, niter=ITERS, gpu=True, max_points_per_centroid=10 ** 9,
                                            min_points_per_centroid=1).train(host, init_centroids=c0)
    med, last = paired(fns, opts.repeats, warmup=True)
    ours = last["ours"]
    rel = abs(ours.inertia / last["plain"] - 1)
    share, note = gpu.rate_note(2.0 * n * k * d * (ours.n_iter + 1), med["ours"], rate, "fp32, TF32 off")
    note += f"; {ours.n_iter} iterations, Δinertia vs plain {rel:.1e}"
    what = f"k-means {n:,}×{d} fp32, k={k}, {ITERS} iterations, same init"
    rows = [Row("kmeans", what, "1 GPU", med["ours"], "plain torch Lloyd loop", med["plain"],
                "" if opts.quick else "≤0.7", rel <= 1e-4, note, share=share)]
    rows.append(Row("kmeans", what + ", 2^23-score tiles", "1 GPU", med["small"], "ours, 2^26-score tiles",
                    med["ours"], exact=abs(last["small"].inertia / ours.inertia - 1) <= 1e-4))
    if "faiss" in med:
        rows.append(Row("kmeans", what, "1 GPU", med["ours"], "faiss-gpu Kmeans (host rows)", med["faiss"],
                        share=share))
    return rows
