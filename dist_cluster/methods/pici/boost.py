"""PICI's boosting machinery (SPEC P4, P7-8): no-grad passes over every training sample, k-means pseudo-labels
per view, and the global Hungarian matching of pseudo-labels to the cluster head.

All functions are called on every rank together (they gather); their results are identical on every rank.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from sklearn.metrics import normalized_mutual_info_score

from dist_cluster.eval.passes import index_ordered_pass
from dist_cluster.objectives.cross_level import match_pseudo_labels

FEATURE_MODES = ("l2", "minmax")


def two_view_pass(net, batches: Iterable[dict], mask_ratio: float, device, dtype) -> dict[str, torch.Tensor]:
    """Instance features z and cluster probabilities c of both views of every sample, in global-index order
    on every rank: {"index", "z_a", "z_b", "c_a", "c_b"} (z, c in float32, on the CPU)."""
    def step(batch):
        out = {}
        for v, x in zip("ab", batch["views"][:2]):
            res = net(x.to(device=device, dtype=dtype), mask_ratio)
            out[f"z_{v}"], out[f"c_{v}"] = res["z"].float(), res["c"].float()
        return out
    return index_ordered_pass(batches, step)


def kmeans_features(z: torch.Tensor, mode: str = "l2", batch_size: int = 96) -> torch.Tensor:
    """l2: the L2-normalised z (SPEC P7-8); minmax: MinMax-scaled per chunk of `batch_size` rows in index
    order, as the reference code scales each mini-batch of its fixed-order pass. float64."""
    if mode not in FEATURE_MODES:
        raise ValueError(f"pl_features must be one of {FEATURE_MODES}, got {mode!r}")
    x = torch.nn.functional.normalize(z.double(), dim=1)
    if mode == "minmax":
        from sklearn.preprocessing import minmax_scale
        x = torch.cat([torch.from_numpy(minmax_scale(x[s:s + batch_size].numpy()))
                       for s in range(0, len(x), batch_size)])
    return x


def pseudo_labels(z_views: list[torch.Tensor], num_clusters: int, cluster_fn: Callable, mode: str = "l2",
                  batch_size: int = 96) -> torch.Tensor:
    """(V, N) k-means labels, one row per view (Eq. 12-13), from `cluster_fn(features (N, d), k) -> labels (N,)`."""
    return torch.stack([torch.as_tensor(cluster_fn(kmeans_features(z, mode, batch_size), num_clusters),
                                        dtype=torch.long) for z in z_views])


def epoch_matching(pseudo: torch.Tensor, heads: list[torch.Tensor], num_clusters: int) -> tuple[torch.Tensor, dict]:
    """Per view k, the Hungarian mapping (k-means id → head id) maximising agreement with q^k = argmax C^k over
    all samples; plus NMI(p^k, q^k) and the matched agreement for logging."""
    maps, stats = [], {}
    for k, (p, c) in enumerate(zip(pseudo, heads)):
        q = c.argmax(dim=1)
        mapping = match_pseudo_labels(p, q, num_clusters)
        maps.append(mapping)
        view = "ab"[k]
        stats[f"cli/nmi_pseudo_head_{view}"] = float(normalized_mutual_info_score(p.numpy(), q.numpy()))
        stats[f"cli/matched_agreement_{view}"] = float((mapping[p] == q).float().mean())
    return torch.stack(maps), stats
