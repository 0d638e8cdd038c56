"""Silhouette of the inputs under several partitions at once, on one seeded sample of rows.

scikit-learn's silhouette_score is O(m²·D) per partition; a table scores 5-7 partitions of the same rows, so
the sample's distances are computed once, a block of rows at a time, and every partition sums them per
cluster (index_add: O(m²) each, whatever k). Same definition as scikit-learn: s = (b − a) / max(a, b), a the
mean distance to the other members of its cluster, b the smallest mean distance to another cluster, 0 for a
point alone in its cluster; the score is the mean of s. N ≤ SAMPLE: every row (equals scikit-learn's).
"""
from __future__ import annotations

import numpy as np
import torch

SAMPLE = 10_000


def _score_block(d: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Silhouette values of the block's rows (distances d to all m rows; rows: their cluster ids)."""
    sums = torch.zeros((d.shape[0], len(counts)), dtype=torch.float64).index_add_(1, labels, d)
    own = counts[rows]
    a = sums.gather(1, rows[:, None]).squeeze(1) / (own - 1).clamp_min(1)
    mean = sums / counts.clamp_min(1)
    mean.scatter_(1, rows[:, None], float("inf"))
    mean[:, counts == 0] = float("inf")
    b = mean.min(1).values
    s = (b - a) / torch.maximum(a, b)
    return torch.where((own > 1) & torch.isfinite(s), s, torch.zeros_like(s))


@torch.no_grad()
def silhouettes(x: np.ndarray, partitions: dict[str, np.ndarray], chunk: int = 1024) -> dict[str, float | None]:
    """{name: silhouette} of the rows x (m, D) under each partition (labels of those m rows); None where a
    partition has one cluster, or as many clusters as rows (undefined, as in scikit-learn)."""
    m = len(x)
    parts = {}
    for name, lab in partitions.items():
        uniq, codes = np.unique(np.asarray(lab), return_inverse=True)
        if 1 < len(uniq) < m:
            codes = torch.from_numpy(codes.reshape(-1).astype(np.int64))
            parts[name] = (codes, torch.bincount(codes, minlength=len(uniq)).double())
    out: dict[str, float | None] = {name: None for name in partitions}
    if not parts:
        return out
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    xt = (xt - xt.mean(0)).float()          # centred: less cancellation in ‖a‖² + ‖b‖² − 2ab
    sq = (xt * xt).sum(1)
    totals = dict.fromkeys(parts, 0.0)
    for a0 in range(0, m, chunk):
        blk = xt[a0:a0 + chunk]
        d = (sq[a0:a0 + chunk, None] + sq[None, :] - 2 * blk @ xt.T).clamp_min_(0).sqrt_().double()
        d[torch.arange(len(blk)), torch.arange(a0, a0 + len(blk))] = 0
        for name, (codes, counts) in parts.items():
            totals[name] += float(_score_block(d, codes[a0:a0 + chunk], codes, counts).sum())
    return out | {name: t / m for name, t in totals.items()}
