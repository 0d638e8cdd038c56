"""UNIC's neighbour mining over a whole data set (SPEC U3): positives, second-order cleaning, negative radius.

Q(x_i) ranks every point by distance to x_i, self first, ties by the smaller global index. Positives are
N(x_i) = Q[0:τ1] (self included); negatives are Q[τ2:N], never stored: the point ranked τ2 (its id and its
distance r_i) is enough to sample them exactly (see sampling.py). Cleaning keeps N(x_i) when the union
U(x_i) = ∪_{j ∈ N(x_i)} N(x_j) has at most η members, else replaces it by {x_i}.

Memory: the kNN pass runs with k = τ2 + 1 in rounds whose running top-k stays under `max_state_bytes`
(rows × (τ2+1) × 12 bytes), keeping only the first `keep` columns and the τ2-th id of each row. The result
lives on every rank in global-index order: ids (N × keep, int64), radius (float64), union sizes, clean mask,
and — for the negative sampler — the compared features (N × d, normalised for cosine).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from dist_cluster.distributed import all_gather_varlen, rank, world_size
from dist_cluster.neighbors.knn import iter_knn, prepare


@dataclass
class MiningResult:
    neighbors: torch.Tensor          # (N, keep) int64 global ids, nearest first, self at column 0; keep ≥ τ1
    neg_radius: torch.Tensor         # (N,) float64 distance (pair_distance) to the point ranked τ2
    neg_first: torch.Tensor          # (N,) int64 id of the point ranked τ2: the first admissible negative
    union_size: torch.Tensor         # (N,) int64 |U(x_i)|
    clean: torch.Tensor              # (N,) bool: N(x_i) kept
    tau1: int
    tau2: int
    metric: str
    eta: float                       # the threshold applied (inf: no cleaning)
    features: torch.Tensor | None = None    # (N, d) the compared vectors, for the negative sampler
    stats: dict = field(default_factory=dict)

    @property
    def positives(self) -> torch.Tensor:
        return self.neighbors[:, :self.tau1]


def pair_distance(v: torch.Tensor, i: torch.Tensor, j: torch.Tensor, metric: str,
                  chunk: int = 1 << 16) -> torch.Tensor:
    """Distance between rows v[i] and v[j] in float64, pair by pair (v already prepared for the metric)."""
    out = torch.empty(len(i), dtype=torch.float64, device=v.device)
    for a in range(0, len(i), chunk):
        p, q = v[i[a:a + chunk]].double(), v[j[a:a + chunk]].double()
        out[a:a + chunk] = ((p - q) ** 2).sum(1).sqrt() if metric == "l2" else (1 - (p * q).sum(1)).clamp(0, 2)
    return out


def union_sizes(positives: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """|unique(P[P[i]])| for every row i; rows are split across ranks, the result is on every rank."""
    n, per = positives.shape[0], -(-positives.shape[0] // world_size())
    lo, hi = min(rank() * per, n), min((rank() + 1) * per, n)
    out = []
    for a in range(lo, hi, chunk):
        u = positives[positives[a:min(a + chunk, hi)]].flatten(1).sort(dim=1).values
        out.append(1 + (u[:, 1:] != u[:, :-1]).sum(1))
    local = torch.cat(out) if out else positives.new_empty(0)
    return all_gather_varlen(local)


def clean_mask(union_size: torch.Tensor, eta: float = 0, eta_quantile: float = 0.0) -> tuple[torch.Tensor, float]:
    """Keep N(x_i) when |U_i| ≤ η; η from `eta`, else the `eta_quantile` of |U|; both 0: keep all."""
    if eta <= 0 and eta_quantile > 0:
        kth = min(len(union_size), max(1, math.ceil(eta_quantile * len(union_size))))
        eta = float(union_size.kthvalue(kth).values)
    if eta <= 0:
        return torch.ones_like(union_size, dtype=torch.bool), math.inf
    return union_size <= eta, float(eta)


def _in_global_order(ids: torch.Tensor, *local: torch.Tensor) -> list[torch.Tensor]:
    """Gather per-rank rows and place row r at position ids[r] (ids must cover 0..N-1 exactly)."""
    ids = all_gather_varlen(ids)
    if not torch.equal(ids.sort().values, torch.arange(len(ids), device=ids.device)):
        raise ValueError("mining needs global ids that are exactly 0..N-1 across ranks")
    out = []
    for t in local:
        t = all_gather_varlen(t)
        placed = torch.empty_like(t)
        placed[ids] = t
        out.append(placed)
    return out


@torch.no_grad()
def mine_neighbors(x: torch.Tensor, tau1: int, tau2: int, metric: str = "l2", index: torch.Tensor | None = None,
                   eta: float = 0, eta_quantile: float = 0.0, keep: int = 0, labels: torch.Tensor | None = None,
                   chunk: int | None = None, max_state_bytes: int = 1 << 29,
                   keep_features: bool = True) -> MiningResult:
    """Mine positives, union sizes, cleaning and negative radii for every row of the sharded data set.

    Collective. x: this rank's rows (n_local, d); index: their global ids (default contiguous by rank);
    labels: their classes, only for the statistics (never used by the mining itself).
    """
    keep = max(tau1, keep)
    sizes = all_gather_varlen(torch.tensor([x.shape[0]], device=x.device))
    n_total = int(sizes.sum())
    if not 0 < tau1 < tau2 < n_total or keep > tau2:
        raise ValueError(f"need 0 < tau1 < tau2 < N and keep ≤ tau2; got tau1={tau1} tau2={tau2} keep={keep} "
                         f"N={n_total}")
    if index is None:
        ids = torch.arange(x.shape[0], device=x.device) + int(sizes[:rank()].sum())
    else:
        ids = index.to(x.device).long()
    y_global = None if labels is None else _in_global_order(ids, labels.to(x.device).long())[0]

    near, first, same = [], [], []
    for start, stop, nb in iter_knn(x, tau2 + 1, metric, index, chunk, max_state_bytes):
        near.append(nb.index[:, :keep])
        first.append(nb.index[:, tau2])
        if y_global is not None:      # same-class points ranked below τ2: exact false-negative count
            same.append((y_global[nb.index[:, :tau2]] == y_global[ids[start:stop], None]).sum(1))
    empty = torch.empty(0, dtype=torch.long, device=x.device)
    near_l = torch.cat(near) if near else empty.view(0, keep)
    first_l = torch.cat(first) if first else empty
    v_local = prepare(x, metric)
    neighbors, neg_first, v = _in_global_order(ids, near_l, first_l, v_local)
    radius = pair_distance(v, torch.arange(n_total, device=v.device), neg_first, metric)
    usize = union_sizes(neighbors[:, :tau1])
    clean, eta_used = clean_mask(usize, eta, eta_quantile)
    res = MiningResult(neighbors, radius, neg_first, usize, clean, tau1, tau2, metric, eta_used,
                       v if keep_features else None)
    if y_global is not None:
        from dist_cluster.neighbors.stats import mining_stats
        same_g = _in_global_order(ids, torch.cat(same) if same else empty)[0]
        res.stats = mining_stats(res, y_global, same_below_tau2=same_g)
    return res
