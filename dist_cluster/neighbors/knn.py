"""Exact k nearest neighbours of every row of a data set whose rows are sharded across ranks.

Each rank holds a shard of the database; its queries are its own rows. The database is streamed to every
rank block by block (rank 0's blocks first, each broadcast by its owner, the next one prefetched while the
current one is scored), every local query is scored against every block, and a running top-k per query is
merged exactly. Ties are broken by the smaller global index, and each point is forced to be its own first
neighbour, so the lists do not depend on the number of ranks or the chunk size.

Memory per rank: its own shard (normalised once for cosine: a copy, or in place with `inplace=True`), the
global ids (N int64), two reused database buffers of `chunk` + 16 rows, one reused score tile of
`chunk` × (`chunk` + 16), and for the current round of queries their running top-k (rows × k × (4 + 8)
bytes, up to 9 times that for k ≤ 64 while block lists wait to be merged). Query tiles are views of the
shard (a partial last tile is copied, padded to a multiple of 64 rows).
Rounds keep the top-k state under `max_state_bytes`; each extra round streams the database once more. No N×N
matrix is ever formed. Each database block adds its own top-k to the running lists (one `topk` per block,
a merge of 2k columns; the lists are sorted once at the end).

`gemm_dtype=torch.bfloat16` or `torch.float16` (for GPUs) scores in that precision, keeps the best
`k + rescore` of each block and re-scores them in the shard's precision; lists are exact unless a true
neighbour falls outside those candidates by the low-precision rounding.

Every database block has the same shape (short ones are zero-padded) and query tiles are padded to a
multiple of 64 rows (BLAS rounds products of fewer rows differently), so a pair's score does not depend on
the sharding, and exact duplicates in the database get exactly equal scores. Scores are
still floating-point: two distinct points whose true distances to a query differ by less than the rounding
error may come out in either order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from dist_cluster.distributed import (
    all_gather_nograd,
    all_gather_varlen,
    all_reduce_max,
    broadcast_async,
    rank,
    world_size,
)
from dist_cluster.neighbors.topk import RunningTopK

PAD_ID = torch.iinfo(torch.int64).max     # id of padding rows; they score -inf and sort last
# MKL's dgemm rounds the last few columns of a product differently from the others; zero guard rows at the
# end of every database block keep each real pair out of them, so its score does not depend on its position
GUARD = 16
METRICS = ("l2", "cosine")


@dataclass
class Neighbors:
    index: torch.Tensor    # (n, k) int64 global ids, nearest first (self first unless self_first=False)
    dist: torch.Tensor     # (n, k) ascending; l2: Euclidean distance, cosine: 1 − cos


def prepare(x: torch.Tensor, metric: str, inplace: bool = False) -> torch.Tensor:
    """The vectors that are actually compared: L2-normalised rows for cosine, as given for l2."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if x.numel() and not all(bool(torch.isfinite(v)) for v in torch.aminmax(x)):    # one pass, no mask
        raise ValueError("features contain NaN or inf")
    if metric == "l2":
        return x.contiguous()
    if inplace and x.is_contiguous():      # F.normalize's arithmetic, without the copy
        return x.div_(torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12))
    return F.normalize(x, dim=1).contiguous()


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _shard_layout(n_local: int, index: torch.Tensor | None, device) -> tuple[list[int], torch.Tensor]:
    """Every rank's row count and the global ids of all rows, concatenated in rank order."""
    sizes = [int(s) for s in all_gather_nograd(torch.tensor([n_local], device=device))]
    if index is None:
        return sizes, torch.arange(sum(sizes), device=device)
    if index.shape != (n_local,):
        raise ValueError(f"index must have one global id per row: shape ({n_local},), got {tuple(index.shape)}")
    gid = all_gather_varlen(index.to(device=device, dtype=torch.long))
    if gid.unique().numel() != gid.numel():
        raise ValueError("global ids in `index` repeat across rows")
    return sizes, gid


def _database_blocks(x: torch.Tensor, sizes: list[int], tile: int) -> Iterator[tuple[int, int, int, torch.Tensor]]:
    """(src rank, first local row, rows, zero-padded (tile + GUARD)×d block): every rank's blocks in order."""
    me, multi = rank(), world_size() > 1
    plan = [(src, b0) for src, n in enumerate(sizes) for b0 in range(0, n, tile)]
    bufs = [x.new_zeros((tile + GUARD, x.shape[1])) for _ in range(min(2, len(plan)))]

    def fetch(j):
        src, b0 = plan[j]
        m, buf = min(tile, sizes[src] - b0), bufs[j % 2]
        if src == me:
            buf[:m] = x[b0:b0 + m]
            buf[m:] = 0
        work = broadcast_async(buf, src) if multi else None
        return m, buf, work

    nxt = fetch(0) if plan else None
    for j, (src, b0) in enumerate(plan):
        m, buf, work = nxt
        if work is not None:
            work.wait()
        if j + 1 < len(plan):
            nxt = fetch(j + 1)          # in flight while this block is scored (the other buffer)
        yield src, b0, m, buf


def _query_tiles(x: torch.Tensor, start: int, stop: int, tile: int) -> list[tuple[int, int, torch.Tensor]]:
    """(q0, q1, rows) per tile: views of x, the last one copied and zero-padded to a multiple of 64 rows."""
    out = []
    for q0 in range(start, stop, tile):
        q1 = min(q0 + tile, stop)
        rows = x[q0:q1]
        if (q1 - q0) % 64:
            rows = torch.cat([rows, rows.new_zeros((_round_up(q1 - q0, 64) - (q1 - q0), x.shape[1]))])
        out.append((q0, q1, rows))
    return out


def _score(q, blk, neg_sq, out, metric, low):
    """Scores (rows of q) × (rows of blk) into out: q·b for cosine, 2 q·b − ‖b‖² for l2 (same order per query)."""
    if low is not None:
        q, blk = q.to(low), blk.to(low)
        out = out.to(low)
    if metric == "l2":
        return torch.addmm(neg_sq.to(out.dtype), q, blk.T, alpha=2, out=out)
    return torch.mm(q, blk.T, out=out)


def _rescore(q, blk, neg_sq, s, ids, keep, metric):
    """The best `keep` columns of the low-precision scores s, re-scored in q's precision: (scores, ids).

    Padding (−inf) and self (+inf) marks are kept as they are."""
    p = s.topk(min(keep, s.shape[1]), dim=1).indices
    exact = torch.einsum("qd,qcd->qc", q, blk[p])
    if metric == "l2":
        exact = exact * 2 + neg_sq[p]
    marks = s.gather(1, p).to(exact.dtype)
    return torch.where(torch.isfinite(marks), exact, marks), ids[p]


def iter_knn(x: torch.Tensor, k: int, metric: str = "l2", index: torch.Tensor | None = None, chunk: int = 4096,
             max_state_bytes: int = 1 << 29, self_first: bool = True, n_queries: int | None = None,
             inplace: bool = False, gemm_dtype: torch.dtype | None = None,
             rescore: int = 16) -> Iterator[tuple[int, int, Neighbors]]:
    """Yield (start, stop, neighbours of local rows start:stop), one round at a time.

    Collective: every rank must drain the iterator. x: (n_local, d) this rank's rows; index: their global
    ids (default: rank-ordered contiguous ranges); n_queries: query only the first n local rows (all by default);
    inplace: normalise x itself for cosine; gemm_dtype/rescore: low-precision scoring (see module doc).
    """
    x = prepare(x, metric, inplace)
    sizes, gid = _shard_layout(x.shape[0], index, x.device)
    n_total, me = sum(sizes), rank()
    if not 0 < k <= n_total:
        raise ValueError(f"k must be in [1, {n_total}] (rows in the data set), got {k}")
    offsets = [sum(sizes[:r]) for r in range(len(sizes))]
    tile = min(_round_up(max(chunk, 1), 64), _round_up(n_total, 64))
    pending = 8 if k <= 64 else 1        # blocks' lists kept aside before a merge (RunningTopK)
    per_row = k * (x.element_size() + 8) * (pending + 1)
    rows_per_round = max(tile, (max_state_bytes // per_row) // tile * tile)
    nq = x.shape[0] if n_queries is None else min(n_queries, x.shape[0])
    rounds = torch.tensor([-(-nq // rows_per_round)], device=x.device)
    all_reduce_max(rounds)
    ids = torch.full((tile + GUARD,), PAD_ID, dtype=torch.long, device=x.device)
    score_buf = x.new_empty((tile, tile + GUARD))

    for r in range(int(rounds)):
        start, stop = min(r * rows_per_round, nq), min((r + 1) * rows_per_round, nq)
        tiles = _query_tiles(x, start, stop, tile)
        best = [RunningTopK(k, pending) for _ in tiles]
        for src, b0, m, blk in _database_blocks(x, sizes, tile):
            ids[:m], ids[m:] = gid[offsets[src] + b0:offsets[src] + b0 + m], PAD_ID
            neg_sq = -(blk * blk).sum(1) if metric == "l2" else None
            for (q0, q1, q), running in zip(tiles, best):
                s = _score(q, blk, neg_sq, score_buf[:q.shape[0]], metric, gemm_dtype)[:q1 - q0]
                s[:, m:] = float("-inf")
                if self_first and src == me:
                    lo, hi = max(q0, b0), min(q1, b0 + m)
                    if lo < hi:
                        rr = torch.arange(lo, hi, device=x.device)
                        s[rr - q0, rr - b0] = float("inf")
                if gemm_dtype is None:
                    running.add(s, ids)
                else:
                    running.add(*_rescore(q[:q1 - q0], blk, neg_sq, s, ids, k + rescore, metric))
        if not tiles:
            continue
        score, idx = (torch.cat(t) for t in zip(*(b.result() for b in best)))
        if metric == "l2":
            q_sq = (x[start:stop] * x[start:stop]).sum(1, keepdim=True)
            d = (q_sq - score).clamp_min(0).sqrt()
        else:
            d = (1 - score).clamp(0, 2)
        if self_first:
            d[:, 0] = 0
        yield start, stop, Neighbors(idx, d)


def knn(x: torch.Tensor, k: int, metric: str = "l2", index: torch.Tensor | None = None, chunk: int = 4096,
        max_state_bytes: int = 1 << 29, self_first: bool = True, n_queries: int | None = None,
        inplace: bool = False, gemm_dtype: torch.dtype | None = None, rescore: int = 16) -> Neighbors:
    """The k nearest neighbours (global ids and distances) of every local row, aligned with x's rows."""
    parts = [nb for _, _, nb in iter_knn(x, k, metric, index, chunk, max_state_bytes, self_first, n_queries,
                                         inplace, gemm_dtype, rescore)]
    if not parts:
        return Neighbors(torch.empty((0, k), dtype=torch.long, device=x.device), x.new_empty((0, k)))
    return Neighbors(torch.cat([p.index for p in parts]), torch.cat([p.dist for p in parts]))
