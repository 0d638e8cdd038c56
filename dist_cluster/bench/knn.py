"""Exact kNN against faiss-cpu IndexFlatIP on unit vectors (cosine), 1 and 2 processes.

Two rows at 1 process: `knn`'s default (bfloat16 candidates re-scored in float32 where the CPU multiplies
bfloat16 in hardware, e.g. AMX, and the rows are 384+ wide; its lists are certified exact or searched again),
and the float32-only search (`gemm_dtype=None`); a third row runs the device path on CPU (`path="device"`, the
default on CUDA) to show its CPU cost beside the CPU path. The float32 scores go through oneDNN
(`dist_cluster.cpu_gemm`); one more row runs the float32 search with torch.mm's GEMMs instead
(`DIST_CLUSTER_CPU_GEMM=blas`: MKL in torch's x86 wheels), and one row times the score tile's GEMM alone in
both (with numpy's BLAS in the note), so the GEMM rates behind the kNN rows are in the same table.
The database is the whole set; with W processes each searches the first q/W rows of its shard. A list is
"exact" when its ids equal faiss's, or differ only in members whose float64 score is within 1e-5 of the
k-th (ties). The quick inputs are compared with float64 brute force instead.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np
import torch

from dist_cluster import cpu_gemm
from dist_cluster.bench.registry import Options, Row
from dist_cluster.bench.timer import paired, time_on_shard


def unit_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def query_ids(n: int, world: int, q: int) -> np.ndarray:
    cut = [n * r // world for r in range(world + 1)]
    return np.concatenate([np.arange(a, min(b, a + -(-q // world))) for a, b in zip(cut[:-1], cut[1:])])


def same_up_to_ties(x: np.ndarray, ids: np.ndarray, a: np.ndarray, b: np.ndarray, tol: float = 1e-5) -> int:
    """How many rows of a and b hold the same ids, or differ only by members tied with the k-th score."""
    good = int((a == b).all(1).sum())
    for r in np.nonzero(~(a == b).all(1))[0]:
        diff = np.setxor1d(a[r], b[r])
        q = x[ids[r]].astype(np.float64)
        kth = np.sort(x[a[r]].astype(np.float64) @ q)[0]
        good += bool(len(diff) == 0 or np.all(np.abs(x[diff].astype(np.float64) @ q - kth) <= tol))
    return good


def _on_rank(rank, world, x, q, k, repeats):
    from dist_cluster.neighbors import knn
    times, nb = time_on_shard(rank, world, x, repeats,
                              lambda xs: knn(xs, k, metric="cosine", n_queries=-(-q // world)))
    return times, nb.index.numpy()


@contextlib.contextmanager
def gemm_backend(name: str):
    old = os.environ.get("DIST_CLUSTER_CPU_GEMM")
    os.environ["DIST_CLUSTER_CPU_GEMM"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["DIST_CLUSTER_CPU_GEMM"]
        else:
            os.environ["DIST_CLUSTER_CPU_GEMM"] = old


def gemm_row(d: int, opts: Options) -> tuple[Row, dict]:
    """The score tile's float32 GEMM (4096 × 4096 × d, 1024 rows on the quick inputs) through cpu_gemm against
    torch.mm, with numpy's BLAS in the note: the rates behind the kNN rows."""
    m = 1024 if opts.quick else 4096
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, d, generator=g), torch.randn(m, d, generator=g)
    an, bt = a.numpy(), b.numpy().T

    def numpy_mm():
        return an @ bt

    def torch_mm():
        with gemm_backend("blas"):
            return cpu_gemm.linear(a, b)

    med, last = paired({"ours": lambda: cpu_gemm.linear(a, b), "torch.mm": torch_mm, "numpy": numpy_mm},
                       opts.repeats + 2, pause=opts.pause)
    rate = {k: 2 * m * m * d / v / 1e9 for k, v in med.items()}
    ref = a.double() @ b.double().T
    bound = (d + 1) * 2.0 ** -24 * (a.double().abs() @ b.double().abs().T)
    exact = bool(((last["ours"].double() - ref).abs() <= bound).all())
    return Row("knn", f"float32 GEMM {m}×{m}×{d} (a score tile), via {cpu_gemm.backend()}", f"1×{opts.threads}",
               med["ours"], "torch.mm", med["torch.mm"], "", exact,
               f"GFLOP/s: ours {rate['ours']:.0f}, torch.mm {rate['torch.mm']:.0f}, numpy {rate['numpy']:.0f}; "
               "exact = within float32 accumulation's bound"), rate


def run(opts: Options) -> list[Row]:
    import faiss

    from dist_cluster.distributed.spawn import run_world
    from dist_cluster.neighbors import knn
    from dist_cluster.neighbors.rescore import AUTO_MIN_DIM, auto_dtype, fast_low_precision
    torch.set_num_threads(opts.threads)
    faiss.omp_set_num_threads(opts.threads)
    n, d, q, k = (3000, 64, 600, 10) if opts.quick else (100_000, 768, 10_000, 10)
    x = unit_vectors(n, d)
    what = f"exact kNN, {n}×{d} unit vectors, {q} queries, k={k}"

    def fa():
        index = faiss.IndexFlatIP(d)
        index.add(x)
        return index.search(x[:q], k)[1]

    def ours():
        nb = knn(torch.from_numpy(x), k, metric="cosine", n_queries=q)
        return nb.index.numpy(), nb.searched_again

    def ours_fp32():
        return knn(torch.from_numpy(x), k, metric="cosine", n_queries=q, gemm_dtype=None).index.numpy()

    def ours_blas():
        with gemm_backend("blas"):
            return knn(torch.from_numpy(x), k, metric="cosine", n_queries=q, gemm_dtype=None).index.numpy()

    def ours_device():
        return knn(torch.from_numpy(x), k, metric="cosine", n_queries=q, path="device").index.numpy()

    med, last = paired({"ours": ours, "fp32": ours_fp32, "blas": ours_blas, "device": ours_device, "faiss": fa},
                       opts.repeats, pause=opts.pause)
    if opts.quick:         # float64 brute force: argsort by (−score, id), self first
        x64 = x.astype(np.float64)
        s = x64[:q] @ x64.T
        s[np.arange(q), np.arange(q)] = np.inf
        ref = np.lexsort((np.broadcast_to(np.arange(n), s.shape), -s), axis=1)[:, :k]
        good, good_fp32, good_blas, good_dev = (int((got == ref).all(1).sum()) for got in (
            last["ours"][0], last["fp32"], last["blas"], last["device"]))
    else:
        good, good_fp32, good_blas, good_dev = (same_up_to_ties(x, np.arange(q), got, last["faiss"]) for got in (
            last["ours"][0], last["fp32"], last["blas"], last["device"]))
    again = last["ours"][1]
    low = auto_dtype(torch.from_numpy(x[:1])) is not None
    why = ("no AMX: bfloat16 GEMMs not in hardware" if not fast_low_precision(torch.device("cpu"))
           else f"rows narrower than {AUTO_MIN_DIM}")
    how = "bf16 candidates re-scored in fp32" if low else f"float32 via {cpu_gemm.backend()}, {why}"
    note = f"; {q - again} certified, {again} searched again" if low else ""
    g_row, g_rate = gemm_row(d, opts)
    flops = 2 * q * n * d / 1e9

    def rates(name):        # the search's useful GFLOP/s, and its share of each GEMM's rate in the GEMM row
        r = flops / med[name]
        return (f"; {r:.0f} GFLOP/s = {r / g_rate['ours']:.0%} of the GEMM row's {cpu_gemm.backend()}, "
                f"{r / g_rate['torch.mm']:.0%} of torch.mm's, {r / g_rate['numpy']:.0%} of numpy's")

    rows = [Row("knn", f"{what}, default ({how})", f"1×{opts.threads}", med["ours"], "faiss IndexFlatIP",
                med["faiss"], "" if opts.quick else "≤1.0", good == q, f"{good}/{q} lists exact{note}"),
            Row("knn", what + f", float32 only (gemm_dtype=None, via {cpu_gemm.backend()})", f"1×{opts.threads}",
                med["fp32"], "faiss IndexFlatIP", med["faiss"], "" if opts.quick else "≤1.0", good_fp32 == q,
                f"{good_fp32}/{q} lists exact{rates('fp32')}; faiss{rates('faiss')[1:]}"),
            Row("knn", what + ", float32 only, torch.mm GEMMs (DIST_CLUSTER_CPU_GEMM=blas)", f"1×{opts.threads}",
                med["blas"], "faiss IndexFlatIP", med["faiss"], "", good_blas == q,
                f"{good_blas}/{q} lists exact{rates('blas')}"),
            g_row,
            Row("knn", f"{what}, device path on CPU (path='device')", f"1×{opts.threads}", med["device"],
                "ours, CPU path", med["ours"], "", good_dev == q, f"{good_dev}/{q} lists exact")]
    for world in [w for w in opts.procs if w > 1]:
        per = max(1, opts.threads // world)
        per_rank = run_world(_on_rank, world, x, q, k, opts.repeats, threads=per)
        t = float(np.median(np.max([r[0] for r in per_rank], axis=0)))
        ids = query_ids(n, world, q)
        got = np.concatenate([r[1] for r in per_rank])
        one = dict(zip(range(q), last["ours"][0]))
        shared = [j for j, i in enumerate(ids) if i in one]
        same = all(np.array_equal(got[j], one[ids[j]]) for j in shared)
        peers = [(f"ours 1×{opts.threads}", med["ours"])]
        if not opts.quick:          # timing only
            one_s = float(np.median(run_world(_on_rank, 1, x, q, k, opts.repeats, threads=per)[0][0]))
            peers.append((f"ours 1×{per} (same threads/process)", one_s))
        for peer_name, peer in peers:
            rows.append(Row("knn", what, f"{world}×{per}", t, peer_name, peer, "" if opts.quick else "≤0.65", same,
                            f"{len(ids)} queries; lists = 1 process on {len(shared)} shared"))
    return rows
