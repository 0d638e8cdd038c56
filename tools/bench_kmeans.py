"""k-means: dist_cluster.clustering.kmeans on 1 and 2 processes against scikit-learn's KMeans, same run.

Each data set is clustered from the same initial centres (scikit-learn's k-means++ with a fixed seed) by both,
then by each with its own k-means++ seeding (n_init=1). Printed: wall time (seeding included in the
"own init" rows), Lloyd iterations, inertia, its relative difference to scikit-learn's, and the ARI between
the two labelings.

    python tools/bench_kmeans.py
    python tools/bench_kmeans.py --threads 2 --procs 1 2
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.datasets import load_digits, make_blobs
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dist_cluster.clustering import kmeans  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def datasets(which: list[str]):
    if "digits" in which:
        yield "digits pixels f64", load_digits().data.astype(np.float64), 10
    if "fmnist" in which:
        from dist_cluster.data.sources import read_idx
        x = np.concatenate([read_idx(f"{FMNIST}/{s}-images-idx3-ubyte.gz") for s in ("train", "t10k")])
        x = x.reshape(len(x), -1).astype(np.float32) / 255.0
        yield "FMNIST pixels f32", x, 10
        yield "FMNIST pixels f64", x.astype(np.float64), 10
    if "blobs" in which:
        x, _ = make_blobs(n_samples=200_000, centers=100, n_features=32, cluster_std=2.0, random_state=0)
        yield "blobs f32", x.astype(np.float32), 100


def _worker(rank, world, port, path, init_path, k, seed, threads, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    full = np.load(path, mmap_mode="r")
    a, b = len(full) * rank // world, len(full) * (rank + 1) // world
    x = torch.from_numpy(np.array(full[a:b]))
    init = torch.from_numpy(np.load(init_path)) if init_path else "k-means++"
    dist.barrier()
    t = time.perf_counter()
    r = kmeans(x, k, init=init, seed=seed)
    secs = time.perf_counter() - t
    np.save(os.path.join(out_dir, f"{rank}.npy"), r.labels.numpy())
    if rank == 0:
        np.save(os.path.join(out_dir, "info.npy"), np.array([secs, r.inertia, r.n_iter]))
    dist.destroy_process_group()


def ours(x: np.ndarray, k: int, init, seed: int, world: int, threads: int):
    """(seconds, inertia, n_iter, labels in global order)."""
    if world == 1:
        torch.set_num_threads(threads)
        t = time.perf_counter()
        r = kmeans(torch.from_numpy(x), k, init=torch.from_numpy(init) if init is not None else "k-means++",
                   seed=seed)
        return time.perf_counter() - t, r.inertia, r.n_iter, r.labels.numpy()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        path, init_path = os.path.join(tmp, "x.npy"), os.path.join(tmp, "init.npy") if init is not None else ""
        np.save(path, x)
        if init is not None:
            np.save(init_path, init)
        mp.start_processes(_worker, args=(world, port, path, init_path, k, seed, threads, tmp),
                           nprocs=world, start_method="spawn")
        secs, inertia, n_iter = np.load(os.path.join(tmp, "info.npy"))
        labels = np.concatenate([np.load(os.path.join(tmp, f"{r}.npy")) for r in range(world)])
        return float(secs), float(inertia), int(n_iter), labels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", default=["digits", "fmnist", "blobs"])
    p.add_argument("--threads", type=int, default=2, help="threads in all (split across processes)")
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    fmt = "{:<18} {:>10} {:>4} {:<9} {:<13} {:>13} {:>7} {:>6} {:>14} {:>10} {:>6}"
    print(fmt.format("data", "N×d", "k", "init", "method", "procs×threads", "time s", "iters", "inertia",
                     "Δ rel", "ARI"), flush=True)

    def row(*r):
        print(fmt.format(*r[:6], f"{r[6]:.2f}", r[7], f"{r[8]:.6g}", f"{r[9]:+.1e}", f"{r[10]:.4f}"), flush=True)

    warm = np.random.default_rng(0).standard_normal((500, 8))       # first calls pay one-off set-up costs
    with threadpool_limits(args.threads):
        KMeans(4, n_init=1).fit(warm)
    kmeans(torch.from_numpy(warm), 4)
    for name, x, k in datasets(args.data):
        init = kmeans_plusplus(x, k, random_state=args.seed)[0]
        for label, init_arg in (("same init", init), ("own init", None)):
            with threadpool_limits(args.threads):
                t = time.perf_counter()
                ref = KMeans(k, init=init if init_arg is not None else "k-means++", n_init=1,
                             random_state=args.seed).fit(x)
                t_ref = time.perf_counter() - t
            shape = f"{len(x)}×{x.shape[1]}"
            row(name, shape, k, label, "scikit-learn", f"1×{args.threads}", t_ref, ref.n_iter_, ref.inertia_, 0.0, 1.0)
            for world in args.procs:
                secs, inertia, n_iter, labels = ours(x, k, init_arg, args.seed, world, max(1, args.threads // world))
                row(name, shape, k, label, "dist_cluster", f"{world}×{args.threads // world}", secs, n_iter, inertia,
                    inertia / ref.inertia_ - 1, adjusted_rand_score(ref.labels_, labels))


if __name__ == "__main__":
    main()
