"""The result table's baselines, at any N: which run, on which rows, with which seed, and what they cost.

Every baseline uses REPORT_SEED (0), never the method's seed, so the same data give the same baseline rows
whatever `--seed` / `--n-init` chose. Each runs on the inputs as given and L2-normalised.

  N ≤ SKLEARN_MAX_ROWS (10,000)  scikit-learn's KMeans(n_init=10) and SpectralClustering (10-NN graph,
                                 ARPACK shift-invert): the peer a user knows, fast at this size
  larger N                       KMeans (dist_cluster): `dist_cluster.clustering.kmeans`, n_init=10, the
                                 lowest inertia kept, on all rows; Spectral (dist_cluster): the exact 10-NN
                                 connectivity graph (`dist_cluster.neighbors.knn`), ½(A + Aᵀ), the k leading
                                 eigenvectors of D^-½ W D^-½ by Lanczos without shift-invert (as CgMCR²-SC),
                                 rows normalised (NJW), then k-means (scikit-learn's on a CPU, ours on a
                                 GPU); on a seeded sample of
                                 max(SPECTRAL_ROWS, SPECTRAL_ROWS_PER_CLUSTER·k) = max(10,000, 50·k) rows
                                 (the kNN graph costs N²·D; the silhouette sample lies inside it)
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

REPORT_SEED = 0
N_INIT = 10
NEIGHBORS = 10
SKLEARN_MAX_ROWS = 10_000
SPECTRAL_ROWS = 10_000
SPECTRAL_ROWS_PER_CLUSTER = 50
CHOICES = {"none": (), "kmeans": ("kmeans",), "all": ("kmeans", "spectral")}
LABELS = {("kmeans", "scikit-learn"): "KMeans (scikit-learn)", ("kmeans", "dist_cluster"): "KMeans (dist_cluster)",
          ("spectral", "scikit-learn"): "SpectralClustering (scikit-learn)",
          ("spectral", "dist_cluster"): "Spectral (dist_cluster kNN+Lanczos)"}


@dataclass
class Baseline:
    algo: str          # kmeans | spectral
    form: str          # given | l2
    impl: str          # scikit-learn | dist_cluster
    rows: int          # rows clustered: N, or a seeded sample (`sample_rows`)

    @property
    def key(self) -> str:
        return self.algo if self.form == "given" else f"{self.algo}_l2"

    @property
    def label(self) -> str:
        return LABELS[self.algo, self.impl]


def plan(n: int, k: int, which=("kmeans", "spectral"), skip=()) -> list[Baseline]:
    """The baselines a table on N rows gets; `skip`: keys the caller already has (--method kmeans)."""
    if n <= k:
        return []
    impl = "scikit-learn" if n <= SKLEARN_MAX_ROWS else "dist_cluster"
    out = []
    for algo in which:
        if algo not in ("kmeans", "spectral"):
            raise ValueError(f"unknown baseline {algo!r}; use kmeans or spectral")
        rows = min(n, max(SPECTRAL_ROWS, SPECTRAL_ROWS_PER_CLUSTER * k)) if algo == "spectral" else n
        out += [b for form in ("given", "l2") if (b := Baseline(algo, form, impl, rows)).key not in skip]
    return out


def sample_rows(n: int, m: int, seed: int = REPORT_SEED) -> np.ndarray:
    """Sorted ids of a seeded m-row sample; the samples of one N are nested (the first m of one permutation)."""
    if m >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:m])


def l2_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@contextmanager
def on_this_process():
    """The report runs on rank 0 alone: the package's collectives must not wait for ranks that are not in it."""
    from dist_cluster.distributed import collectives
    saved = collectives.is_dist
    collectives.is_dist = lambda: False
    try:
        yield
    finally:
        collectives.is_dist = saved


def _tensor(x: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)


def our_kmeans(x: np.ndarray, k: int, seed: int = REPORT_SEED, n_init: int = N_INIT, device="cpu"):
    from dist_cluster.clustering import kmeans
    with on_this_process():
        return kmeans(_tensor(x, device), k, n_init=n_init, seed=seed)


def our_spectral(x: np.ndarray, k: int, neighbors: int = NEIGHBORS, seed: int = REPORT_SEED, device="cpu"):
    import scipy.sparse as sp

    from dist_cluster.methods.cgmcr2.spectral import spectral_embedding_njw
    from dist_cluster.neighbors import knn
    n, nn = len(x), min(neighbors, len(x))
    with on_this_process():     # self included, as scikit-learn's kneighbors_graph(include_self=True)
        idx = knn(_tensor(x, device), nn, metric="l2").index.cpu().numpy()
    a = sp.csr_matrix((np.ones(n * nn), (np.repeat(np.arange(n), nn), idx.ravel())), shape=(n, n))
    emb = spectral_embedding_njw(0.5 * (a + a.T), k, seed)
    if torch.device(device).type == "cpu":      # N × k rows: scikit-learn's seeding is the faster one on a CPU
        return sklearn_labels("kmeans", emb, k, seed)
    return our_kmeans(emb, k, seed, N_INIT, device).labels.cpu().numpy()


def sklearn_labels(algo: str, x: np.ndarray, k: int, seed: int = REPORT_SEED, neighbors: int = NEIGHBORS):
    from sklearn.cluster import KMeans, SpectralClustering
    if algo == "kmeans":
        return KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit_predict(x)
    if algo == "spectral":
        return SpectralClustering(n_clusters=k, affinity="nearest_neighbors", n_neighbors=min(neighbors, len(x) - 1),
                                  random_state=seed, n_jobs=1).fit_predict(x)
    raise ValueError(f"unknown baseline {algo!r}; use kmeans or spectral")


def fit(b: Baseline, x: np.ndarray, k: int, neighbors: int = NEIGHBORS, device="cpu") -> tuple[np.ndarray, float]:
    """(labels of the rows `sample_rows(N, b.rows)`, seconds)."""
    xs = x if b.rows >= len(x) else x[sample_rows(len(x), b.rows)]
    xs = l2_rows(xs) if b.form == "l2" else xs
    t = time.perf_counter()
    if b.impl == "scikit-learn":
        labels = sklearn_labels(b.algo, xs, k, REPORT_SEED, neighbors)
    elif b.algo == "kmeans":
        labels = our_kmeans(xs, k, device=device).labels.cpu().numpy()
    else:
        labels = our_spectral(xs, k, neighbors, device=device)
    return np.asarray(labels), time.perf_counter() - t


def gemm_rate(device="cpu") -> float:
    """Float32 multiply-adds per second of this process (a short product, taken once per report)."""
    a = torch.randn(512, 512, device=device)
    a @ a
    t = time.perf_counter()
    for _ in range(4):
        a @ a
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return 4 * 512 ** 3 / max(time.perf_counter() - t, 1e-9)


def kmeans_cost(n: int, d: int, k: int, n_init: int = N_INIT, iters: int = 60) -> float:
    """Multiply-adds of n_init k-means runs (k-means++ seeding and ~`iters` Lloyd passes each)."""
    return n_init * (iters + 3) * n * d * k


def estimate_seconds(plan_: list[Baseline], n: int, d: int, k: int, rate: float) -> float:
    """A rough cost (×3 for what is not a product) of `plan_`; scikit-learn's rows only run at small N."""
    ops = 0.0
    for b in plan_:
        if b.algo == "kmeans":
            ops += kmeans_cost(b.rows, d, k)
        else:
            ops += b.rows ** 2 * d + 300 * b.rows * (2 * k + 1) * (NEIGHBORS + 2 * k) + kmeans_cost(b.rows, k, k)
    return 3 * ops / rate
