"""k-means over row-sharded data: every rank holds some rows; centroids end up identical on all ranks.

Lloyd iterations as scikit-learn runs them, on the data centred on their mean: assign and sum each
cluster's rows in one pass (per chunk in the data's dtype, accumulated in float64), all_reduce sums and
counts in one collective, relocate empty clusters to the points farthest from their centres (globally, ties
by the smaller global index), stop when no label changes or the centre shift Σ‖Δc‖² ≤ tol · mean
per-feature variance, then assign once more so labels match the returned centres. Distances are computed
`chunk` rows at a time (memory chunk × k). `backend="sklearn"` gathers the rows to rank 0, runs
scikit-learn's KMeans there and broadcasts centres and labels (reference parity, e.g. for PICI).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dist_cluster.clustering.seeding import kmeans_plusplus, random_rows, shard_offsets
from dist_cluster.distributed import all_gather_varlen, all_reduce_sum, broadcast, rank


@dataclass
class KMeansResult:
    centroids: torch.Tensor    # (k, d), the same on every rank
    labels: torch.Tensor       # (n_local,) int64 cluster of each local row
    inertia: float             # Σ over all rows of the squared distance to its centroid
    n_iter: int


def assign(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 8192, shift: torch.Tensor | None = None,
           sums: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid (ties: smaller id) and its squared distance (float64) for every row.

    shift: subtracted from every row first (the centroids must be given in the shifted coordinates).
    sums: if given, a (k, d) float64 tensor to which each cluster's (shifted) rows are added, in the same pass.
    """
    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    d2 = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    c_sq = (centroids * centroids).sum(1)
    for a in range(0, x.shape[0], chunk):
        xb = x[a:a + chunk] if shift is None else x[a:a + chunk] - shift
        m, i = (c_sq - 2 * xb @ centroids.T).min(1)     # ‖x‖² left out of the argmin, as scikit-learn does
        labels[a:a + chunk] = i
        d2[a:a + chunk] = (m.double() + (xb * xb).sum(1).double()).clamp_min(0)
        if sums is not None:     # a chunk's sums in the data's dtype, accumulated in float64
            sums += xb.new_zeros(sums.shape).index_add_(0, i, xb).double()
    return labels, d2


def kmeans_predict(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    return assign(x, centroids.to(x), chunk)[0]


def _assign_and_reduce(x, c, labels_old, mu, chunk):
    """Labels, distances, and the global per-cluster sums (float64), counts and number of changed labels."""
    k = c.shape[0]
    sums = torch.zeros((k, x.shape[1]), dtype=torch.float64, device=x.device)
    labels, d2 = assign(x, c, chunk, mu, sums)
    counts = torch.bincount(labels, minlength=k).double()
    changed = (labels != labels_old).sum().double().reshape(1)
    packed = all_reduce_sum(torch.cat([sums.flatten(), counts, changed]))     # one collective per iteration
    return labels, d2, packed[:sums.numel()].view_as(sums), packed[sums.numel():-1], int(packed[-1])


def _relocate_empty(x, d2, labels, sums, counts, offsets, mu):
    """Move the globally farthest points into the empty clusters (scikit-learn's rule), deterministically."""
    empty = (counts == 0).nonzero().squeeze(1)
    m = min(len(empty), int(offsets[-1]))
    top = torch.argsort(d2, descending=True, stable=True)[:m]     # ties: smaller index first
    d2_all, gid_all = all_gather_varlen(d2[top]), all_gather_varlen(top + offsets[rank()])
    rows_all, old_all = all_gather_varlen((x[top] - mu).double()), all_gather_varlen(labels[top])
    order = torch.argsort(gid_all, stable=True)
    order = order[torch.argsort(d2_all[order], descending=True, stable=True)][:m]
    for c, j in zip(empty[:m].tolist(), order.tolist()):
        sums[old_all[j]] -= rows_all[j]
        counts[old_all[j]] -= 1
        sums[c], counts[c] = rows_all[j], 1


def _lloyd(x, centroids, max_iter, tol, chunk, offsets, mu):
    """Lloyd from `centroids`; internally in coordinates centred on the data mean mu (as scikit-learn)."""
    c = centroids - mu
    labels_old = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
    k, strict = c.shape[0], False
    for it in range(1, max_iter + 1):
        labels, d2, sums, counts, changed = _assign_and_reduce(x, c, labels_old, mu, chunk)
        if (counts == 0).any():
            _relocate_empty(x, d2, labels, sums, counts, offsets, mu)
        new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], c.double()).to(x)
        shift = float(((new.double() - c.double()) ** 2).sum())
        c = new
        if changed == 0:
            strict = True
            break
        if shift <= tol:
            break
        labels_old = labels
    if not strict:
        labels, d2 = assign(x, c, chunk, mu)
    return c + mu, labels, float(all_reduce_sum(d2.sum().reshape(1))), it


def _mean_and_tol(x: torch.Tensor, tol: float, n_total: int, chunk: int) -> tuple[torch.Tensor, float]:
    """The data mean, and tol × its mean per-feature variance (scikit-learn's convention)."""
    blocks = range(0, x.shape[0], chunk)
    zero = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    mu = all_reduce_sum(sum((x[a:a + chunk].double().sum(0) for a in blocks), zero)) / n_total
    var = all_reduce_sum(sum((((x[a:a + chunk].double() - mu) ** 2).sum(0) for a in blocks), zero)) / n_total
    return mu.to(x), tol * float(var.mean())


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, n_init: int = 1, max_iter: int = 300, tol: float = 1e-4, seed: int = 0,
           init: str | torch.Tensor = "k-means++", chunk: int = 8192, backend: str = "torch") -> KMeansResult:
    """Cluster the rows of all ranks into k clusters; the best of n_init runs (lowest inertia) is kept.

    Collective. init: "k-means++", "random" (k distinct rows) or a (k, d) tensor (then one run).
    """
    if backend == "sklearn":
        from dist_cluster.clustering.reference import sklearn_kmeans
        return sklearn_kmeans(x, k, n_init, max_iter, tol, seed, init)
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' or 'sklearn', got {backend!r}")
    offsets = shard_offsets(x.shape[0], x.device)
    k = k if not isinstance(init, torch.Tensor) else init.shape[0]
    if not 0 < k <= int(offsets[-1]):
        raise ValueError(f"k must be in [1, {int(offsets[-1])}] (rows in the data set), got {k}")
    mu, tol_abs = _mean_and_tol(x, tol, int(offsets[-1]), chunk)
    gen = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(1 if isinstance(init, torch.Tensor) else n_init):
        if isinstance(init, torch.Tensor):
            c0 = init.to(x).clone()
        elif init == "k-means++":
            c0 = kmeans_plusplus(x, k, gen)
        elif init == "random":
            c0 = random_rows(x, k, gen)
        else:
            raise ValueError(f"init must be 'k-means++', 'random' or a (k, d) tensor, got {init!r}")
        run = KMeansResult(*_lloyd(x, c0, max_iter, tol_abs, chunk, offsets, mu))
        if best is None or run.inertia < best.inertia:
            best = run
    best.centroids = broadcast(best.centroids.contiguous())
    return best
