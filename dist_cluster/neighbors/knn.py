"""Exact k nearest neighbours of every row of a data set whose rows are sharded across ranks.

Each rank holds a shard of the database; its queries are its own rows. The database is streamed to every
rank block by block (rank 0's blocks first, each broadcast by its owner, the next one prefetched while the
current one is scored), every local query is scored against every block, and a running top-k per query is
merged exactly. Ties are broken by the smaller global index, and each point is forced to be its own first
neighbour, so the lists do not depend on the number of ranks or the chunk size.

Memory per rank: its own shard (plus a normalised copy for cosine), the global ids (N int64), two database
blocks of `chunk` rows, one `chunk`×(`chunk`+16) score tile, and for the current round of queries a padded
copy of their rows and their running top-k (rows × k × (4 + 8) bytes; about three times that while merging).
Rounds keep the top-k state under `max_state_bytes`; each extra round streams the database once more. No N×N
matrix is ever formed. Example, 1.28M × 768 float32 on 8 ranks, chunk 4096: shard 0.49 GB, blocks 25 MB,
tile 67 MB; k = 50 needs one round (96 MB of state); k = τ2 + 1 = 6301 needs about 40 rounds at the default
512 MiB (160k rows × 6301 × 12 B = 12 GB of state in all), so raise it where memory allows.

Every score tile is a product of the same shape (short shards and blocks are zero-padded), so a pair's score
does not depend on the sharding, and exact duplicates in the database get exactly equal scores. Scores are
still floating-point: two distinct points whose true distances to a query differ by less than the rounding
error may come out in either order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F

from dist_cluster.distributed import all_gather_nograd, all_gather_varlen, rank, world_size
from dist_cluster.neighbors.topk import merge_topk, topk_lex

PAD_ID = torch.iinfo(torch.int64).max     # id of padding rows; they score -inf and sort last
# MKL's dgemm rounds the last few columns of a product differently from the others; zero guard rows at the
# end of every database block keep each real pair out of them, so its score does not depend on its position
GUARD = 16
METRICS = ("l2", "cosine")


@dataclass
class Neighbors:
    index: torch.Tensor    # (n, k) int64 global ids, nearest first (self first unless self_first=False)
    dist: torch.Tensor     # (n, k) ascending; l2: Euclidean distance, cosine: 1 − cos


def prepare(x: torch.Tensor, metric: str) -> torch.Tensor:
    """The vectors that are actually compared: L2-normalised rows for cosine, as given for l2."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features contain NaN or inf")
    return (F.normalize(x, dim=1) if metric == "cosine" else x).contiguous()


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

    def fetch(src, b0):
        m = min(tile, sizes[src] - b0)
        buf = x.new_zeros((tile + GUARD, x.shape[1]))
        if src == me:
            buf[:m] = x[b0:b0 + m]
        work = dist.broadcast(buf, src, async_op=True) if multi else None
        return m, buf, work

    nxt = fetch(*plan[0]) if plan else None
    for j, (src, b0) in enumerate(plan):
        m, buf, work = nxt
        if work is not None:
            work.wait()
        if j + 1 < len(plan):
            nxt = fetch(*plan[j + 1])          # in flight while this block is scored
        yield src, b0, m, buf


def iter_knn(x: torch.Tensor, k: int, metric: str = "l2", index: torch.Tensor | None = None, chunk: int = 4096,
             max_state_bytes: int = 1 << 29, self_first: bool = True,
             n_queries: int | None = None) -> Iterator[tuple[int, int, Neighbors]]:
    """Yield (start, stop, neighbours of local rows start:stop), one round at a time.

    Collective: every rank must drain the iterator. x: (n_local, d) this rank's rows; index: their global
    ids (default: rank-ordered contiguous ranges); n_queries: query only the first n local rows (all by default).
    """
    x = prepare(x, metric)
    sizes, gid = _shard_layout(x.shape[0], index, x.device)
    n_total, me = sum(sizes), rank()
    if not 0 < k <= n_total:
        raise ValueError(f"k must be in [1, {n_total}] (rows in the data set), got {k}")
    offsets = [sum(sizes[:r]) for r in range(len(sizes))]
    tile = min(_round_up(max(chunk, 1), 64), _round_up(n_total, 64))
    per_row = k * (x.element_size() + 8)
    rows_per_round = max(tile, (max_state_bytes // per_row) // tile * tile)
    nq = x.shape[0] if n_queries is None else min(n_queries, x.shape[0])
    rounds = torch.tensor([-(-nq // rows_per_round)], device=x.device)
    if world_size() > 1:
        dist.all_reduce(rounds, op=dist.ReduceOp.MAX)
    pad_ids = torch.full((tile + GUARD,), PAD_ID, dtype=torch.long, device=x.device)

    for r in range(int(rounds)):
        start, stop = min(r * rows_per_round, nq), min((r + 1) * rows_per_round, nq)
        tiles = [(q0, min(q0 + tile, stop)) for q0 in range(start, stop, tile)]
        q_pad = [x.new_zeros((tile, x.shape[1])) for _ in tiles]
        for (q0, q1), buf in zip(tiles, q_pad):
            buf[:q1 - q0] = x[q0:q1]
        best: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(tiles)
        for src, b0, m, blk in _database_blocks(x, sizes, tile):
            ids = pad_ids.clone()
            ids[:m] = gid[offsets[src] + b0:offsets[src] + b0 + m]
            blk_sq = (blk * blk).sum(1)
            for t, ((q0, q1), q) in enumerate(zip(tiles, q_pad)):
                s = q @ blk.T
                if metric == "l2":       # −‖q−b‖² + ‖q‖²: same order per query, one product
                    s.mul_(2).sub_(blk_sq)
                s[:, m:] = float("-inf")
                if self_first and src == me:
                    lo, hi = max(q0, b0), min(q1, b0 + m)
                    if lo < hi:
                        rr = torch.arange(lo, hi, device=x.device)
                        s[rr - q0, rr - b0] = float("inf")
                s, i = topk_lex(s[:q1 - q0], ids, k)
                best[t] = (s, i) if best[t] is None else merge_topk(*best[t], s, i, k)
        if not tiles:
            continue
        score = torch.cat([b[0] for b in best])
        idx = torch.cat([b[1] for b in best])
        if metric == "l2":
            q_sq = (x[start:stop] * x[start:stop]).sum(1, keepdim=True)
            d = (q_sq - score).clamp_min(0).sqrt()
        else:
            d = (1 - score).clamp(0, 2)
        if self_first:
            d[:, 0] = 0
        yield start, stop, Neighbors(idx, d)


def knn(x: torch.Tensor, k: int, metric: str = "l2", index: torch.Tensor | None = None, chunk: int = 4096,
        max_state_bytes: int = 1 << 29, self_first: bool = True, n_queries: int | None = None) -> Neighbors:
    """The k nearest neighbours (global ids and distances) of every local row, aligned with x's rows."""
    parts = [nb for _, _, nb in iter_knn(x, k, metric, index, chunk, max_state_bytes, self_first, n_queries)]
    if not parts:
        return Neighbors(torch.empty((0, k), dtype=torch.long, device=x.device), x.new_empty((0, k)))
    return Neighbors(torch.cat([p.index for p in parts]), torch.cat([p.dist for p in parts]))
