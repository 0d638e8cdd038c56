"""Initial centroids for k-means over row-sharded data, identical on every rank.

Greedy k-means++ as scikit-learn runs it (Arthur & Vassilvitskii 2007 with 2 + ⌊ln k⌋ trials per centre):
the random numbers come from one generator seeded alike on every rank, so all ranks draw the same values;
a drawn position in the global cumulative D² mass is resolved by the rank that owns it, and candidate rows
and potentials are combined with collectives. Data are visited rank by rank in their global order.
"""
from __future__ import annotations

import math

import torch

from dist_cluster.distributed import all_gather_nograd, all_reduce_sum, broadcast, rank
from dist_cluster.precision import exact_float32


def shard_offsets(n_local: int, device) -> torch.Tensor:
    """Start of every rank's rows in the global order, plus the total: (W + 1,) int64."""
    sizes = all_gather_nograd(torch.tensor([n_local], device=device))
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])


@exact_float32()
def sq_dist(x: torch.Tensor, c: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Squared Euclidean distances (n, m) in float64 between rows of x and the few rows of c, x in chunks."""
    c_sq = (c * c).sum(1)
    out = torch.empty((x.shape[0], c.shape[0]), dtype=torch.float64, device=x.device)
    for a in range(0, x.shape[0], chunk):
        xb = x[a:a + chunk]
        out[a:a + chunk] = ((xb * xb).sum(1, keepdim=True) - 2 * xb @ c.T + c_sq).clamp_min(0)
    return out


def rows_at(x: torch.Tensor, global_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The rows with these global ids, on every rank (each owner contributes its rows, summed in)."""
    me = rank()
    out = x.new_zeros((len(global_ids), x.shape[1]))
    mine = (global_ids >= offsets[me]) & (global_ids < offsets[me + 1])
    out[mine] = x[global_ids[mine] - offsets[me]]
    return all_reduce_sum(out)


def _draw_rows(x: torch.Tensor, closest: torch.Tensor, u: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Rows at fractions u ∈ [0,1) of the global cumulative D² mass (numpy searchsorted 'left' semantics)."""
    local_cum = closest.cumsum(0)
    ends = all_gather_nograd(local_cum[-1:] if len(closest) else closest.new_zeros(1)).cumsum(0)
    u = u * ends[-1]
    last = int((offsets[1:] > offsets[:-1]).nonzero().max())      # the last rank that holds rows
    owner = torch.searchsorted(ends, u).clamp_max(last)
    me = rank()
    out = x.new_zeros((len(u), x.shape[1]))
    mine = owner == me
    if mine.any() and len(closest):
        start = ends[me - 1] if me > 0 else ends.new_zeros(())
        pos = torch.searchsorted(local_cum, u[mine] - start).clamp_max(len(closest) - 1)
        out[mine] = x[pos]
    return all_reduce_sum(out)


@torch.no_grad()
def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k initial centroids (k, d) by greedy k-means++ over the rows of all ranks."""
    offsets = shard_offsets(x.shape[0], x.device)
    n_total = int(offsets[-1])
    if not 0 < k <= n_total:
        raise ValueError(f"k must be in [1, {n_total}], got {k}")
    trials = 2 + int(math.log(k))
    first = torch.randint(0, n_total, (1,), generator=generator).to(x.device)
    centers = [rows_at(x, first, offsets)]
    closest = sq_dist(x, centers[0]).squeeze(1)
    for _ in range(1, k):
        u = torch.rand(trials, generator=generator, dtype=torch.float64).to(x.device)
        cand = _draw_rows(x, closest, u, offsets)
        d = torch.minimum(closest[:, None], sq_dist(x, cand))
        best = int(all_reduce_sum(d.sum(0)).argmin())
        centers.append(cand[best:best + 1])
        closest = d[:, best].contiguous()
    return broadcast(torch.cat(centers).contiguous())


@torch.no_grad()
def random_rows(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k distinct rows drawn uniformly from the whole data set."""
    offsets = shard_offsets(x.shape[0], x.device)
    ids = torch.randperm(int(offsets[-1]), generator=generator)[:k].to(x.device)
    return rows_at(x, ids, offsets)
