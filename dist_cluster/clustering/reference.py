"""scikit-learn's KMeans on rank 0 over the gathered rows, its centres and labels broadcast back."""
from __future__ import annotations

import numpy as np
import torch

from dist_cluster.distributed import all_gather_nograd, broadcast, gather_to, is_dist, rank, world_size


def gather_to_rank0(x: torch.Tensor) -> torch.Tensor | None:
    """All ranks' rows in rank order on rank 0 (None elsewhere); shards may differ in length."""
    if not is_dist() or world_size() == 1:
        return x
    sizes = [int(s) for s in all_gather_nograd(torch.tensor([x.shape[0]], device=x.device))]
    pad = x.new_zeros((max(sizes) - x.shape[0],) + tuple(x.shape[1:]))
    buf = torch.cat([x, pad]).contiguous()
    parts = gather_to(buf, dst=0)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]) if rank() == 0 else None


@torch.no_grad()
def sklearn_kmeans(x: torch.Tensor, k: int, n_init: int, max_iter: int, tol: float, seed: int, init):
    from sklearn.cluster import KMeans

    from dist_cluster.clustering.kmeans import KMeansResult
    from dist_cluster.clustering.seeding import shard_offsets

    offsets = shard_offsets(x.shape[0], x.device)
    full = gather_to_rank0(x)
    centroids = x.new_zeros((k, x.shape[1]))
    labels = torch.zeros(int(offsets[-1]), dtype=torch.long, device=x.device)
    info = torch.zeros(2, dtype=torch.float64, device=x.device)
    if rank() == 0:
        init_arg = init.detach().cpu().numpy() if isinstance(init, torch.Tensor) else init
        km = KMeans(n_clusters=k, init=init_arg, n_init=1 if isinstance(init, torch.Tensor) else n_init,
                    max_iter=max_iter, tol=tol, random_state=seed).fit(full.detach().cpu().numpy())
        centroids.copy_(torch.from_numpy(np.asarray(km.cluster_centers_)))
        labels.copy_(torch.from_numpy(km.labels_.astype(np.int64)))
        info.copy_(torch.tensor([km.inertia_, km.n_iter_], dtype=torch.float64))
    centroids, labels, info = broadcast(centroids), broadcast(labels), broadcast(info)
    me = rank()
    return KMeansResult(centroids, labels[offsets[me]:offsets[me + 1]].clone(), float(info[0]), int(info[1]))
