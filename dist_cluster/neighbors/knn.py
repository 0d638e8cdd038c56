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
matrix is ever formed. Each database block adds its own top-k to the running lists (selected through the
maxima of column groups, `topk.RunningTopK`; the lists are sorted once at the end).

`gemm_dtype=torch.bfloat16` or `torch.float16` (AMX on recent Xeons, tensor cores on GPUs) scores in that
precision and keeps each query's best `k + rescore` candidates, which are then scored again in the data's
precision; a query whose k-th exact score beats every other row's bound is certified exact, the others are
searched again in full precision (`dist_cluster.neighbors.rescore`), so the lists are those of the full
search either way. The default, "auto", does so in bfloat16 for float32 rows of 384+ columns where every
rank's device multiplies bfloat16 in hardware (`rescore.auto_dtype`); None searches in full precision only.

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
from dist_cluster.neighbors import rescore as rescore_
from dist_cluster.neighbors.topk import RunningTopK, lexsort_rows
from dist_cluster.precision import exact_float32

PAD_ID = torch.iinfo(torch.int64).max     # id of padding rows; they score -inf and sort last
# MKL's dgemm rounds the last few columns of a product differently from the others; zero guard rows at the
# end of every database block keep each real pair out of them, so its score does not depend on its position
GUARD = 16
METRICS = ("l2", "cosine")


@dataclass
class Neighbors:
    index: torch.Tensor    # (n, k) int64 global ids, nearest first (self first unless self_first=False)
    dist: torch.Tensor     # (n, k) ascending; l2: Euclidean distance, cosine: 1 − cos
    searched_again: int = 0   # low-precision search: queries whose candidates were not certified


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


def _query_tiles(x: torch.Tensor, rows, tile: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(local row ids, query rows) per tile of `rows` (a range: views of x; a tensor: gathered), the rows
    zero-padded to a multiple of 64 when needed."""
    out = []
    for a in range(0, len(rows), tile):
        part = rows[a:a + tile]
        if isinstance(part, range):
            q, part = x[part.start:part.stop], torch.arange(part.start, part.stop, device=x.device)
        else:
            q = x[part]
        if len(part) % 64:
            q = torch.cat([q, q.new_zeros((_round_up(len(part), 64) - len(part), x.shape[1]))])
        out.append((part, q))
    return out


@exact_float32()
def _score(q, blk, neg_sq, out, metric):
    """Scores (rows of q) × (rows of blk) into out: q·b for cosine, 2 q·b − ‖b‖² for l2 (same order per query)."""
    if metric == "l2":
        return torch.addmm(neg_sq, q, blk.T, alpha=2, out=out)
    return torch.mm(q, blk.T, out=out)


@dataclass
class _Search:
    """What every search of one call shares: the shards' layout, the tile and the metric."""
    x: torch.Tensor
    sizes: list[int]
    gid: torch.Tensor
    tile: int
    metric: str
    self_first: bool
    pending: int
    identity: bool         # gid is arange (default ids)

    def blocks(self):
        offsets = [sum(self.sizes[:r]) for r in range(len(self.sizes))]
        for src, b0, m, buf in _database_blocks(self.x, self.sizes, self.tile):
            yield src, offsets[src] + b0, b0, m, buf

    def lists(self, rows, keep: int, low: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Collective: the best `keep` (score, global id) of each local query row, sorted, scored in `low`
        (or x's precision)."""
        x, me = self.x, rank()
        dtype = low or x.dtype          # of the scores: queries and blocks are converted once
        tiles = [(rid, q.to(dtype)) for rid, q in _query_tiles(x, rows, self.tile)]
        best = [RunningTopK(keep, self.pending, ties=low is None) for _ in tiles]
        ids = torch.full((self.tile + GUARD,), PAD_ID, dtype=torch.long, device=x.device)
        score_buf = x.new_empty((self.tile, self.tile + GUARD), dtype=dtype)
        for src, start, b0, m, blk in self.blocks():
            ids[:m], ids[m:] = self.gid[start:start + m], PAD_ID
            neg_sq = (-(blk * blk).sum(1)).to(dtype) if self.metric == "l2" else None
            blk = blk.to(dtype)
            for (rid, q), running in zip(tiles, best):
                s = _score(q, blk, neg_sq, score_buf[:q.shape[0]], self.metric)[:len(rid)]
                s[:, m:] = float("-inf")
                if self.self_first and src == me:
                    mine = ((rid >= b0) & (rid < b0 + m)).nonzero().squeeze(1)
                    s[mine, rid[mine] - b0] = float("inf")
                running.add(s, ids)
        if not tiles:
            return x.new_empty((0, keep), dtype=low or x.dtype), torch.empty((0, keep), dtype=torch.long)
        return tuple(torch.cat(t) for t in zip(*(b.result() for b in best)))

    def rescored(self, rows, k: int, low: torch.dtype, rescore: int, b_max: float):
        """Collective: low-precision candidates re-scored exactly; uncertified queries searched again in full."""
        with rescore_.float32_accumulation(self.x.device):
            s, ids = self.lists(rows, k + rescore, low)
        q = self.x[rows.start:rows.stop]
        pos = rescore_.positions(self.gid, ids, self.identity)
        exact = rescore_.exact_scores(q, pos, s, ((st, m, buf) for _, st, _, m, buf in self.blocks()), self.metric)
        e, i = lexsort_rows(exact, ids)
        e, i = e[:, :k], i[:, :k]
        last = s[:, -1].to(e.dtype)
        eps = rescore_.error_bound(low, q.shape[1], torch.linalg.vector_norm(q, dim=1), b_max, last, self.metric)
        ok = (last == float("-inf")) | (e[:, -1] > last + eps)
        bad = (~ok).nonzero().squeeze(1)
        again = torch.tensor([len(bad)], device=q.device)
        all_reduce_max(again)
        if int(again):
            e[bad], i[bad] = self.lists(bad + rows.start, k, None)
        return e, i, len(bad)


def iter_knn(x: torch.Tensor, k: int, metric: str = "l2", index: torch.Tensor | None = None, chunk: int = 4096,
             max_state_bytes: int = 1 << 29, self_first: bool = True, n_queries: int | None = None,
             inplace: bool = False, gemm_dtype: torch.dtype | str | None = "auto",
             rescore: int = 32) -> Iterator[tuple[int, int, Neighbors]]:
    """Yield (start, stop, neighbours of local rows start:stop), one round at a time.

    Collective: every rank must drain the iterator. x: (n_local, d) this rank's rows; index: their global
    ids (default: rank-ordered contiguous ranges); n_queries: query only the first n local rows (all by default);
    inplace: normalise x itself for cosine; gemm_dtype/rescore: low-precision candidates (see module doc).
    """
    if gemm_dtype is not None and gemm_dtype != "auto" and gemm_dtype not in rescore_.UNIT_ROUNDOFF:
        raise ValueError(f"gemm_dtype must be 'auto', None, torch.bfloat16 or torch.float16, got {gemm_dtype}")
    x = prepare(x, metric, inplace)
    if gemm_dtype == "auto":           # one choice for all ranks: the two searches run different collectives
        unable = torch.tensor([rescore_.auto_dtype(x) is None], dtype=torch.int32, device=x.device)
        gemm_dtype = None if int(all_reduce_max(unable)) else torch.bfloat16
    sizes, gid = _shard_layout(x.shape[0], index, x.device)
    n_total = sum(sizes)
    if not 0 < k <= n_total:
        raise ValueError(f"k must be in [1, {n_total}] (rows in the data set), got {k}")
    tile = min(_round_up(max(chunk, 1), 64), _round_up(n_total, 64))
    pending = 8 if k <= 64 else 1        # blocks' lists kept aside before a merge (RunningTopK)
    keep = k + (rescore if gemm_dtype is not None else 0)
    per_row = keep * (x.element_size() + 8) * (pending + 1)
    rows_per_round = max(tile, (max_state_bytes // per_row) // tile * tile)
    nq = x.shape[0] if n_queries is None else min(n_queries, x.shape[0])
    rounds = torch.tensor([-(-nq // rows_per_round)], device=x.device)
    all_reduce_max(rounds)
    search = _Search(x, sizes, gid, tile, metric, self_first, pending, index is None)
    b_max = 0.0
    if gemm_dtype is not None:      # the largest row norm, for the error bound
        b_max = float(all_reduce_max(torch.linalg.vector_norm(x, dim=1).amax().reshape(1) if len(x)
                                     else x.new_zeros(1)))

    for r in range(int(rounds)):
        start, stop = min(r * rows_per_round, nq), min((r + 1) * rows_per_round, nq)
        if gemm_dtype is None:
            score, idx = search.lists(range(start, stop), k, None)
            again = 0
        else:
            score, idx, again = search.rescored(range(start, stop), k, gemm_dtype, rescore, b_max)
        if start == stop:
            continue
        if metric == "l2":
            q_sq = (x[start:stop] * x[start:stop]).sum(1, keepdim=True)
            d = (q_sq - score).clamp_min(0).sqrt()
        else:
            d = (1 - score).clamp(0, 2)
        if self_first:
            d[:, 0] = 0
        yield start, stop, Neighbors(idx, d, again)


def knn(x: torch.Tensor, k: int, metric: str = "l2", index: torch.Tensor | None = None, chunk: int = 4096,
        max_state_bytes: int = 1 << 29, self_first: bool = True, n_queries: int | None = None,
        inplace: bool = False, gemm_dtype: torch.dtype | str | None = "auto", rescore: int = 32) -> Neighbors:
    """The k nearest neighbours (global ids and distances) of every local row, aligned with x's rows."""
    parts = [nb for _, _, nb in iter_knn(x, k, metric, index, chunk, max_state_bytes, self_first, n_queries,
                                         inplace, gemm_dtype, rescore)]
    if not parts:
        return Neighbors(torch.empty((0, k), dtype=torch.long, device=x.device), x.new_empty((0, k)))
    return Neighbors(torch.cat([p.index for p in parts]), torch.cat([p.dist for p in parts]),
                     sum(p.searched_again for p in parts))
