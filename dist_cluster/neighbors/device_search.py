"""The device path of the exact kNN search: large tiles, the whole selection on the device, one host sync a round.

Per (query tile, database block) pair: one GEMM into a reused score tile; guard and padding columns set to
−inf and each query's own column to +inf (a diagonal of the tile, no index search); the maxima of contiguous
groups of G columns; the columns of the `keep + SPARE` best groups turned into int64 keys (`keys`: higher
score, then smaller id) and merged with the running best keep + 1 by one `topk`. Nothing is read back.

A column outside the chosen groups scores at most the best unchosen group's maximum; the largest such value
over the blocks is the query's `bound`. A list is certified when its k-th score is above the bound (and, for
float64 scores, keyed by their float32 rounding, when the k-th and (k+1)-th keys differ in their score part).
Other rows are flagged on the device and, after the round, searched again with the CPU path's exact
selection over the same tiles (so with the same scores). The round's one host sync is the flagged count.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dist_cluster.distributed import all_reduce_max, rank
from dist_cluster.neighbors import keys as keys_
from dist_cluster.neighbors.search import Search
from dist_cluster.neighbors.tiles import GUARD, PAD_ID, even_length, operand, query_tiles, score
from dist_cluster.neighbors.topk import lexsort_rows

SPARE = 8                     # groups chosen beyond keep: a cut tied with an unchosen group's maximum is rare
CUDA_TILE = (16384, 65536)    # query rows × database columns of a score tile on CUDA, shrunk to free memory


def group_width(width: int, chosen: int) -> int:
    """Columns per group: the widest of 16, 8, 4, 2 leaving at least 2 (chosen + 1) groups, else 1."""
    return next((g for g in (16, 8, 4, 2) if width % g == 0 and width // g >= 2 * (chosen + 1)), 1)


def cuda_tiles(x: torch.Tensor, sizes: list[int], nq: int, elem: int) -> tuple[int, int]:
    """(query rows, database rows) per tile on CUDA: a score tile within a quarter of the free memory (the
    least over ranks), every shard cut into blocks of equal length, the queries into tiles of equal length."""
    free = torch.tensor([-torch.cuda.mem_get_info(x.device)[0]], device=x.device)
    budget = -int(all_reduce_max(free)) // 4
    rows, cols = CUDA_TILE
    while rows * cols * elem > budget and rows > 1024:
        rows //= 2
    while rows * cols * elem > budget and cols > 4096:
        cols //= 2
    return even_length(nq, rows), even_length(max(sizes), cols - GUARD)


def _mark_self(s: torch.Tensor, first: int | None, rid: torch.Tensor, b0: int, m: int) -> None:
    """+inf at each query's own column: a diagonal when the queries are consecutive rows (first: the first)."""
    if first is not None:
        s[:, :m].diagonal(first - b0).fill_(float("inf"))
        return
    c = (rid - b0).clamp(0, s.shape[1] - 1)[:, None]
    mine = ((rid >= b0) & (rid < b0 + m))[:, None]
    s.scatter_(1, c, torch.where(mine, float("inf"), s.gather(1, c)))


class _Running:
    """One query tile's best keep + 1 keys (and their scores where keys round them: float64), and the bound
    on every column left out."""

    def __init__(self, n: int, keep: int, dtype: torch.dtype, device):
        self.bits, self.dtype = keys_.id_bits(dtype), dtype
        self.keys = torch.full((n, keep + 1), keys_.lowest(dtype), dtype=torch.long, device=device)
        self.scores = None if keys_.exact(dtype) else torch.full((n, keep + 1), float("-inf"), dtype=dtype,
                                                                 device=device)
        self.bound = torch.full((n,), float("-inf"), dtype=dtype, device=device)

    def add(self, s: torch.Tensor, col_low: torch.Tensor, group: int, chosen: int) -> None:
        """s: (n, w) scores; col_low: (w,) the low key bits of the columns' ids (`keys.low_bits`)."""
        n, w = s.shape
        low = col_low
        if w // group > chosen:            # else every column is a candidate
            gmax = s if group == 1 else s.view(n, w // group, group).amax(2)
            gv, gi = gmax.topk(chosen + 1, dim=1)
            cols = (gi[:, :chosen, None] * group + torch.arange(group, device=s.device)).view(n, -1)
            s, low = s.gather(1, cols), col_low[cols]
            torch.maximum(self.bound, gv[:, chosen], out=self.bound)
        merged = torch.cat([self.keys, keys_.join(s, low, self.bits)], 1)
        self.keys, p = merged.topk(self.keys.shape[1], dim=1, sorted=False)
        if self.scores is not None:
            self.scores = torch.cat([self.scores, s.expand(n, -1)], 1).gather(1, p)

    def result(self, keep: int):
        """(scores, ids) of the best keep, sorted, and whether the list is certified."""
        k, o = self.keys.sort(1, descending=True)
        ids = keys_.ids_of(k, self.bits)
        if self.scores is None:
            s = keys_.scores_of(k, self.bits, self.dtype)
        else:                              # order by the exact scores inside the list
            s = self.scores.gather(1, o)
            s[:, :keep], ids[:, :keep] = lexsort_rows(s[:, :keep], ids[:, :keep])
        ok = s[:, keep - 1] > self.bound
        if self.scores is not None:
            ok &= keys_.score_part(k[:, keep - 1], self.bits) > keys_.score_part(k[:, keep], self.bits)
        return s[:, :keep], ids[:, :keep], ok


@dataclass
class DeviceSearch(Search):
    recut: int = 0         # rows whose cut was not certified, searched again

    def __post_init__(self):
        super().__post_init__()
        n = len(self.gid)
        if self.identity:
            self.rank_of = self.gid_sorted = torch.arange(n, device=self.gid.device)
        else:                              # keys hold an id's rank among all ids: its order, in few bits
            order = torch.argsort(self.gid)
            self.gid_sorted = self.gid[order]
            self.rank_of = torch.empty_like(order).scatter_(0, order, torch.arange(n, device=order.device))

    def lists(self, rows, keep: int, low: torch.dtype | None):
        x, me, dtype = self.x, rank(), low or self.x.dtype
        bits = keys_.id_bits(dtype)
        starts = [rows.start + a if isinstance(rows, range) else None for a in range(0, len(rows), self.q_rows)]
        tiles = [(a, rid, q.to(dtype)) for a, (rid, q) in zip(starts, query_tiles(x, rows, self.q_rows))]
        width, chosen = self.tile + GUARD, keep + SPARE
        group = group_width(width, chosen)
        state = [_Running(len(rid), keep, dtype, x.device) for _, rid, _ in tiles]
        col_low = torch.empty(width, dtype=torch.long, device=x.device)
        buf = x.new_empty((max((q.shape[0] for *_, q in tiles), default=0), width), dtype=dtype)
        for src, start, b0, m, blk in self.blocks():
            col_low[:m], col_low[m:] = keys_.low_bits(self.rank_of[start:start + m], bits), 0     # 0: padding
            neg_sq = (-(blk * blk).sum(1)).to(dtype) if self.metric == "l2" else None
            blk = operand(blk.to(dtype), self.metric)
            for (a, rid, q), run in zip(tiles, state):
                s = score(q, blk, neg_sq, buf[:q.shape[0]], self.metric)[:len(rid)]
                s[:, m:] = float("-inf")
                if self.self_first and src == me:
                    _mark_self(s, a, rid, b0, m)
                run.add(s, col_low, group, chosen)
        got = [run.result(keep) for run in state]
        s = torch.cat([g[0] for g in got]) if got else x.new_empty((0, keep), dtype=dtype)
        r = torch.cat([g[1] for g in got]) if got else torch.empty((0, keep), dtype=torch.long, device=x.device)
        ok = torch.cat([g[2] for g in got]) if got else torch.ones(0, dtype=torch.bool, device=x.device)
        n = len(self.gid)
        ids = torch.where(r < n, self.gid_sorted[r.clamp_max(max(n - 1, 0))], PAD_ID)
        if low is None:
            self._search_flagged(rows, keep, s, ids, ok)
        return s, ids, torch.cat([run.bound for run in state]) if state else s.new_empty(0)

    def _search_flagged(self, rows, k: int, s: torch.Tensor, ids: torch.Tensor, ok: torch.Tensor) -> None:
        """Collective: rows whose cut is not certified get the exact selection, in place."""
        flagged = all_reduce_max((~ok).sum().reshape(1))
        if not int(flagged):               # the one host sync of the round
            return
        bad = (~ok).nonzero().squeeze(1)
        sub = bad + rows.start if isinstance(rows, range) else rows[bad]
        s[bad], ids[bad] = Search.lists(self, sub, k, None)[:2]
        self.recut += len(bad)
