"""`--method kmeans`: dist_cluster's own k-means (`dist_cluster.clustering.kmeans`, n_init=10, the lowest
inertia kept) on the features as given, with the CLI's seed. Nothing trains; the "run" is this fit.

predictions.npz holds the clusters, confidence = (d₂ − d₁) / d₂ for the two nearest centres (1 at a centre,
0 on a boundary) and, as embedding, the distances to every centre (scikit-learn's KMeans.transform).
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from dist_cluster.cluster.baselines import N_INIT, our_kmeans

NAME = "KMeans (dist_cluster)"


def kmeans_method(x: np.ndarray, k: int, seed: int, run_dir: str, n_init: int = N_INIT,
                  index: np.ndarray | None = None):
    """The fit and predictions.npz; `index`: the rows' global indices (default 0..N-1; a sample the data layer
    skipped has no row)."""
    from dist_cluster.cluster.run import SeedRun
    os.makedirs(run_dir, exist_ok=True)
    t = time.perf_counter()
    km = our_kmeans(x, k, seed=seed, n_init=n_init)
    wall = time.perf_counter() - t
    d = torch.cdist(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), km.centroids.float())
    two = d.topk(2, dim=1, largest=False).values if k > 1 else torch.cat([d, d], 1)
    conf = ((two[:, 1] - two[:, 0]) / two[:, 1].clamp_min(1e-12)).numpy()
    index = np.arange(len(x)) if index is None else np.asarray(index)
    np.savez(os.path.join(run_dir, "predictions.npz"), index=index, cluster=km.labels.numpy(),
             confidence=conf, embedding=d.numpy())
    return SeedRun(seed=seed, run_dir=os.path.abspath(run_dir), loss=float(km.inertia), wall_s=wall)
