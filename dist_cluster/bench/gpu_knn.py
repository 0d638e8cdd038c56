"""Exact kNN on one GPU: float16 unit rows, cosine, k = 10, beside the plain torch loop and faiss-gpu.

The plain loop is what a user would write: for each 4096-row chunk, `(q @ X.T).topk(10)` (self included, as
in ours). faiss-gpu, where it imports: GpuIndexFlatIP with float16 storage, built outside the timing. The
1M-row case is timed against its 4 s budget. One more row times square tiles (n/6 rows) against the default
(sized from free memory) to show which tile shape the device prefers. Exactness: on 1000 sampled queries
every member of our list scores at least the float32 brute force's k-th (the fp16 rows' products in float32)
less 1e-3 (the fp16 GEMM's rounding), and the query itself comes first.
"""
from __future__ import annotations

import torch

from dist_cluster.bench import gpu
from dist_cluster.bench.registry import Options, Row
from dist_cluster.bench.timer import paired
from dist_cluster.precision import exact_float32

K = 10
SIZES = {True: [(20_000, 768)], False: [(200_000, 768), (1_000_000, 768)]}     # by opts.quick


def unit_rows(n: int, d: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(n, d, device=device, generator=g), dim=1).half()


def plain_loop(x: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([(x[a:a + chunk] @ x.T).topk(k, dim=1).indices for a in range(0, len(x), chunk)])


def lists_exact(x: torch.Tensor, idx: torch.Tensor, k: int, tol: float = 1e-3) -> tuple[int, int]:
    """(lists within tol of the float32 brute force, lists checked) on 1000 sampled queries."""
    g = torch.Generator(device=x.device).manual_seed(1)
    sample = torch.randperm(len(x), device=x.device, generator=g)[:1000]
    with exact_float32():
        s = x[sample].float() @ x.float().T
    kth = s.topk(k, dim=1).values[:, -1:]
    ok = (s.gather(1, idx[sample]) >= kth - tol).all(1) & (idx[sample, 0] == sample)
    return int(ok.sum()), len(sample)


def _faiss_search(faiss, x: torch.Tensor, k: int):
    """A timed search over all rows with the index built here (fp16 storage), or None."""
    res = faiss.StandardGpuResources()
    cfg = faiss.GpuIndexFlatConfig()
    cfg.useFloat16, cfg.device = True, x.device.index or 0
    index = faiss.GpuIndexFlatIP(res, x.shape[1], cfg)
    host = x.float().cpu().numpy()
    index.add(host)
    return lambda: (res, index.search(host, k))       # res kept alive with the index


def _case(n: int, d: int, opts: Options, dev: torch.device, rate: float, faiss) -> list[Row]:
    from dist_cluster.neighbors import knn
    x = unit_rows(n, d, dev)
    what = f"exact kNN {n:,}×{d} fp16 unit rows, cosine, k={K}"
    fns = {"ours": gpu.synced(lambda: knn(x, K, metric="cosine"))}
    if n <= 200_000:                 # at 1M the plain loop's score chunks are 8 GB each: timed against a budget
        fns["plain"] = gpu.synced(lambda: plain_loop(x, K))
        fns["square"] = gpu.synced(lambda: knn(x, K, metric="cosine", chunk=-(-n // 6)))
        if faiss is not None:
            fns["faiss"] = gpu.synced(_faiss_search(faiss, x, K))
    med, last = paired(fns, opts.repeats, warmup=True)
    good, checked = lists_exact(x, last["ours"].index, K)
    share, note = gpu.rate_note(2.0 * n * n * d, med["ours"], rate, "fp16")
    note += f"; {good}/{checked} sampled lists = fp32 brute force; {last['ours'].recut} cuts searched again"
    if "plain" in med:
        rows = [Row("knn", what, "1 GPU", med["ours"], "plain loop: 4096-row (q @ X.T).topk", med["plain"],
                    "" if opts.quick else "≤0.5", good == checked, note, share=share)]
    else:
        rows = [Row("knn", what, "1 GPU", med["ours"], "budget", 4.0, "≤1.0", good == checked, note, share=share)]
    if "square" in med:
        side = -(-n // 6 // 64) * 64
        rows.append(Row("knn", what + f", {side} × {side} tiles", "1 GPU", med["square"], "ours, default tiles",
                        med["ours"], exact=bool(torch.equal(last["square"].index, last["ours"].index))))
    if "faiss" in med:
        rows.append(Row("knn", what, "1 GPU", med["ours"], "faiss-gpu GpuIndexFlatIP (fp16, host queries)",
                        med["faiss"], share=share))
    return rows


def run(opts: Options) -> list[Row]:
    dev = gpu.require_cuda()
    rate, faiss, rows = gpu.matmul_rate(torch.float16, dev), gpu.faiss_gpu(), []
    for n, d in SIZES[opts.quick]:
        rows += _case(n, d, opts, dev, rate, faiss)
        torch.cuda.empty_cache()
    return rows
