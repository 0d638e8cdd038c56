"""k-means per Lloyd iteration against scikit-learn and faiss from the same initial centres.

Time per iteration = fit time (set-up included) / iterations run, at most 20 at full size (to convergence on
the quick inputs). faiss runs as many iterations as we did (it has no tolerance). Exactness: the inertia from
the same init equals scikit-learn's (1e-9 relative and equal labels on the float64 quick inputs; 1e-4 on
float32, whose sums scikit-learn accumulates in float32); 2 processes give the labels of 1 process. One more row
per input runs the device pass on CPU (`path="device"`, the default on CUDA) to show its CPU cost, and one (full
size only) calls ours and scikit-learn three times in a row each (`_back_to_back`).
"""
from __future__ import annotations

import numpy as np
import torch

from dist_cluster.bench.registry import Options, Row
from dist_cluster.bench.timer import Measured, paired, time_on_shard


def fmnist_pixels() -> tuple[str, np.ndarray]:
    """Fashion-MNIST's 70,000 images as float32 in [0, 1]; a same-shaped stand-in when it is not installed."""
    from dist_cluster.data.sources import fmnist_source
    try:
        x = np.concatenate([fmnist_source(s).images for s in ("train", "test")])
        return "Fashion-MNIST 70000×784", x.reshape(len(x), -1).astype(np.float32) / 255.0
    except (FileNotFoundError, OSError):
        x = np.random.default_rng(0).random((70000, 784), dtype=np.float32) ** 3
    return "FMNIST-like 70000×784 (random)", x


def datasets(quick: bool):
    from sklearn.datasets import make_blobs
    if quick:
        x, _ = make_blobs(3000, centers=10, n_features=16, cluster_std=3.0, random_state=0)
        yield "blobs 3000×16 f64", x, 10, True
        yield "gauss 2000×8 f64", np.random.default_rng(0).standard_normal((2000, 8)), 50, False
        return
    name, x = fmnist_pixels()
    yield name, x, 10, True
    x, _ = make_blobs(200_000, centers=100, n_features=32, cluster_std=2.0, random_state=0)
    yield "blobs 200000×32", x.astype(np.float32), 100, False
    yield "gauss 100000×128", np.random.default_rng(0).standard_normal((100_000, 128), dtype=np.float32), 1000, False


def _ours(x, init, max_iter, path="auto"):
    import time

    from dist_cluster.clustering import kmeans
    t = time.perf_counter()
    r = kmeans(torch.from_numpy(x), len(init), init=torch.from_numpy(init), max_iter=max_iter, path=path)
    return Measured((time.perf_counter() - t) / r.n_iter, (r.inertia, r.n_iter, r.labels.numpy()))


def _on_rank(rank, world, x, init, repeats, max_iter):
    from dist_cluster.clustering import kmeans
    times, r = time_on_shard(rank, world, x, repeats,
                             lambda xs: kmeans(xs, len(init), init=torch.from_numpy(init), max_iter=max_iter))
    return [t / r.n_iter for t in times], r.inertia, r.labels.numpy()


def _back_to_back(name: str, k: int, procs: str, fns: dict) -> Row:
    """Each called three times in a row, the median of the last two: both in the state their own last call left
    (the alternating rows put each call after the other library's, which slows scikit-learn's 1.5-3 times)."""
    import statistics
    import time
    med = {}
    for key, fn in fns.items():
        time.sleep(0.5)
        med[key] = statistics.median([fn().seconds for _ in range(3)][1:])
    return Row("kmeans", f"Lloyd iteration, {name}, k={k}, each called 3 times in a row (last 2)", procs,
               med["ours"], "scikit-learn", med["sklearn"], "", None, "not alternated: steady state")


def run(opts: Options) -> list[Row]:
    import faiss
    from sklearn.cluster import KMeans, kmeans_plusplus
    from threadpoolctl import threadpool_limits

    from dist_cluster.distributed.spawn import run_world
    torch.set_num_threads(opts.threads)
    faiss.omp_set_num_threads(opts.threads)
    rows, max_iter = [], 300 if opts.quick else 20
    for name, x, k, two_procs in datasets(opts.quick):
        init = kmeans_plusplus(x, k, random_state=0)[0]

        def sk():
            import time
            with threadpool_limits(opts.threads):
                t = time.perf_counter()
                km = KMeans(k, init=init, n_init=1, max_iter=max_iter).fit(x)
            return Measured((time.perf_counter() - t) / km.n_iter_, (km.inertia_, km.n_iter_, km.labels_))

        n_iter = _ours(x, init, max_iter).result[1]

        def fa():
            import time
            km = faiss.Kmeans(x.shape[1], k, niter=n_iter, max_points_per_centroid=10 ** 9, min_points_per_centroid=1)
            t = time.perf_counter()
            km.train(np.ascontiguousarray(x, dtype=np.float32), init_centroids=init.astype(np.float32))
            return Measured((time.perf_counter() - t) / n_iter)

        med, last = paired({"ours": lambda: _ours(x, init, max_iter), "sklearn": sk, "faiss": fa,
                            "device": lambda: _ours(x, init, max_iter, "device")}, opts.repeats, pause=opts.pause)
        (inertia, iters, labels), (sk_inertia, sk_iters, sk_labels) = last["ours"], last["sklearn"]
        rel = abs(inertia / sk_inertia - 1)
        exact = rel <= (1e-9 if x.dtype == np.float64 else 1e-4)
        if x.dtype == np.float64:
            exact = exact and bool((labels == sk_labels).all())
        note = f"iters {iters} vs {sk_iters}, Δinertia {rel:.1e}"
        procs = f"1×{opts.threads}"
        d_inertia, d_iters, d_labels = last["device"]
        d_rel = abs(d_inertia / sk_inertia - 1)
        d_exact = d_rel <= (1e-9 if x.dtype == np.float64 else 1e-4) and (
            x.dtype != np.float64 or bool((d_labels == sk_labels).all()))
        target = "" if opts.quick else ("≤0.7" if name.startswith("Fashion-MNIST") else "≤1.0")
        rows.append(Row("kmeans", f"Lloyd iteration, {name}, k={k}", procs, med["ours"], "scikit-learn",
                        med["sklearn"], target, exact, note))
        rows.append(Row("kmeans", f"Lloyd iteration, {name}, k={k}", procs, med["ours"], "faiss", med["faiss"],
                        "" if opts.quick else "≤1.2"))
        rows.append(Row("kmeans", f"Lloyd iteration, {name}, k={k}, device path on CPU (path='device')", procs,
                        med["device"], "ours, CPU path", med["ours"], "", d_exact,
                        f"iters {d_iters} vs {sk_iters} (scikit-learn), Δinertia {d_rel:.1e}"))
        if not opts.quick:
            rows.append(_back_to_back(name, k, procs, {"ours": lambda: _ours(x, init, max_iter), "sklearn": sk}))
        for world in [w for w in opts.procs if w > 1 and two_procs]:
            per = max(1, opts.threads // world)
            per_rank = run_world(_on_rank, world, x, init, opts.repeats, max_iter, threads=per)
            t = float(np.median(np.max([r[0] for r in per_rank], axis=0)))
            same = bool((np.concatenate([r[2] for r in per_rank]) == labels).all())
            peers = [(f"ours 1×{opts.threads}", med["ours"])]
            if not opts.quick:          # timing only
                one = float(np.median(run_world(_on_rank, 1, x, init, opts.repeats, max_iter, threads=per)[0][0]))
                peers.append((f"ours 1×{per} (same threads/process)", one))
            for peer_name, peer in peers:
                rows.append(Row("kmeans", f"Lloyd iteration, {name}, k={k}", f"{world}×{per}", t, peer_name, peer,
                                "" if opts.quick else "≤0.65", same, f"labels {'=' if same else '≠'} 1 process"))
    return rows
