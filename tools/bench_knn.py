"""Exact kNN: dist_cluster.neighbors.knn on 1 and 2 processes against faiss-cpu IndexFlatIP, same machine, same run.

Data: N unit vectors (default 100,000 × 768, Gaussian then L2-normalised) and real features — EfficientNet-Lite0
features of Fashion-MNIST when a feature set data/*effnet*/ exists, else its 70,000 raw 784-pixel images —
each L2-normalised, searched by inner product (cosine). The database is always the whole set; `--queries q`
searches the first q rows of each process's shard only (time scales linearly with q).

A query's list is "identical" when ids and order equal faiss's, "same up to ties" when the two id sets
differ only in members whose exact (float64) score is within 1e-5 of the k-th score.

    python tools/bench_knn.py                          # full all-vs-all (long on 2 cores)
    python tools/bench_knn.py --queries 10000 --k 10
"""
from __future__ import annotations

import argparse
import glob
import os
import socket
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dist_cluster.neighbors import knn  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def unit_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def real_features() -> tuple[str, np.ndarray]:
    for train in sorted(glob.glob("data/*effnet*/train.json")):
        from dist_cluster.data import load_feature_arrays
        parts = [load_feature_arrays(p)[0].numpy() for p in (train, train.replace("train.json", "eval.json"))
                 if os.path.exists(p)]
        x = np.concatenate(parts).astype(np.float32)
        return f"FMNIST EffNet-Lite0 ({os.path.dirname(train)})", x / np.linalg.norm(x, axis=1, keepdims=True)
    from dist_cluster.data.sources import read_idx
    x = np.concatenate([read_idx(f"{FMNIST}/{s}-images-idx3-ubyte.gz") for s in ("train", "t10k")])
    x = x.reshape(len(x), -1).astype(np.float32)
    return "FMNIST raw pixels", x / np.linalg.norm(x, axis=1, keepdims=True)


def shards(n: int, world: int) -> list[tuple[int, int]]:
    cut = [n * r // world for r in range(world + 1)]
    return list(zip(cut[:-1], cut[1:]))


def query_ids(n: int, world: int, q: int) -> np.ndarray:
    """Global ids searched with `world` processes: the first q/world rows of each shard."""
    return np.concatenate([np.arange(a, min(b, a + -(-q // world))) for a, b in shards(n, world)])


def _worker(rank, world, port, path, q, k, chunk, threads, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    a, b = shards(len(np.load(path, mmap_mode="r")), world)[rank]
    x = torch.from_numpy(np.array(np.load(path, mmap_mode="r")[a:b]))
    dist.barrier()
    t = time.perf_counter()
    nb = knn(x, k, metric="cosine", chunk=chunk, n_queries=-(-q // world))
    dist.barrier()
    np.save(os.path.join(out_dir, f"{rank}.npy"), nb.index.numpy())
    np.save(os.path.join(out_dir, f"t{rank}.npy"), np.array([time.perf_counter() - t]))
    dist.destroy_process_group()


def ours(path: str, world: int, q: int, k: int, chunk: int, threads: int) -> tuple[float, np.ndarray]:
    if world == 1:
        torch.set_num_threads(threads)
        x = torch.from_numpy(np.load(path))
        t = time.perf_counter()
        nb = knn(x, k, metric="cosine", chunk=chunk, n_queries=q)
        return time.perf_counter() - t, nb.index.numpy()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_worker, args=(world, port, path, q, k, chunk, threads, out), nprocs=world,
                           start_method="spawn")
        secs = max(float(np.load(os.path.join(out, f"t{r}.npy"))[0]) for r in range(world))
        return secs, np.concatenate([np.load(os.path.join(out, f"{r}.npy")) for r in range(world)])


def faiss_search(x: np.ndarray, ids: np.ndarray, k: int, threads: int) -> tuple[float, np.ndarray]:
    import faiss
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexFlatIP(x.shape[1])
    t = time.perf_counter()
    index.add(x)
    _, nb = index.search(x[ids], k)
    return time.perf_counter() - t, nb


def compare(x: np.ndarray, ids: np.ndarray, a: np.ndarray, b: np.ndarray, tol: float = 1e-5) -> tuple[int, int]:
    """(# identical lists, # lists whose id sets differ only by ties at the k-th score)."""
    same = int((a == b).all(1).sum())
    ties = 0
    for r in np.nonzero(~(a == b).all(1))[0]:
        diff = np.setxor1d(a[r], b[r])
        if len(diff) == 0:
            ties += 1          # same set, tied members in another order
            continue
        q = x[ids[r]].astype(np.float64)
        kth = np.sort(x[a[r]].astype(np.float64) @ q)[0]
        ties += bool(np.all(np.abs(x[diff].astype(np.float64) @ q - kth) <= tol))
    return same, ties


def bench(name: str, x: np.ndarray, args, rows: list) -> None:
    n, d = x.shape
    q = n if args.queries <= 0 else min(args.queries, n)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.npy")
        np.save(path, x)
        ids1 = query_ids(n, 1, q)
        t_f, ref1 = faiss_search(x, ids1, args.k, args.threads)
        rows.append((name, f"{n}×{d}", len(ids1), args.k, "faiss IndexFlatIP", f"1×{args.threads}", t_f, 1.0,
                     "ref", ""))
        ours_idx = {}
        for world in args.procs:
            ids = query_ids(n, world, q)
            secs, idx = ours(path, world, q, args.k, args.chunk, max(1, args.threads // world))
            ref = ref1 if np.array_equal(ids, ids1) else faiss_search(x, ids, args.k, args.threads)[1]
            same, ties = compare(x, ids, idx, ref)
            ours_idx[world] = dict(zip(ids.tolist(), idx))
            rows.append((name, f"{n}×{d}", len(ids), args.k, "dist_cluster knn", f"{world}×{args.threads // world}",
                         secs, secs / t_f * len(ids1) / len(ids), f"{same}/{len(ids)}", f"{same + ties}/{len(ids)}"))
        if len(ours_idx) > 1:
            common = sorted(set.intersection(*(set(v) for v in ours_idx.values())))
            eq = sum(all(np.array_equal(ours_idx[w][i], ours_idx[args.procs[0]][i]) for w in ours_idx)
                     for i in common)
            print(f"{name}: lists identical across {args.procs} processes on {eq}/{len(common)} shared queries")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--queries", type=int, default=0, help="rows searched (0: all)")
    p.add_argument("--chunk", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2, help="threads in all (split across processes)")
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--skip-synthetic", action="store_true")
    args = p.parse_args()
    rows: list = []
    if not args.skip_synthetic:
        bench("unit vectors", unit_vectors(args.n, args.d), args, rows)
    if not args.skip_real:
        bench(*real_features(), args, rows)
    head = ("data", "N×d", "queries", "k", "method", "procs×threads", "time s", "× faiss", "identical",
            "same up to ties")
    fmt = "{:<34} {:>11} {:>8} {:>3} {:<18} {:>13} {:>8} {:>8} {:>13} {:>15}"
    print(fmt.format(*head))
    for r in rows:
        print(fmt.format(*r[:6], f"{r[6]:.1f}", f"{r[7]:.2f}", *r[8:]))


if __name__ == "__main__":
    main()
