"""The CPU path of the exact kNN search: per (query tile, database block) pair, an exact selection of the
tile's own top-k (`topk.RunningTopK`, through column-group maxima, ties at the cut sorted by id)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dist_cluster.distributed import all_reduce_max, rank
from dist_cluster.neighbors import rescore as rescore_
from dist_cluster.neighbors.tiles import GUARD, PAD_ID, database_blocks, operand, query_tiles, score
from dist_cluster.neighbors.topk import RunningTopK, lexsort_rows


@dataclass
class Search:
    """What every search of one call shares: the shards' layout, the tiles and the metric."""
    x: torch.Tensor
    sizes: list[int]
    gid: torch.Tensor
    tile: int              # database rows per block
    metric: str
    self_first: bool
    pending: int
    identity: bool         # gid is arange (default ids)
    q_rows: int = 0        # query rows per tile (default: tile)

    def __post_init__(self):
        self.q_rows = self.q_rows or self.tile

    def blocks(self):
        offsets = [sum(self.sizes[:r]) for r in range(len(self.sizes))]
        for src, b0, m, buf in database_blocks(self.x, self.sizes, self.tile):
            yield src, offsets[src] + b0, b0, m, buf

    def lists(self, rows, keep: int, low: torch.dtype | None):
        """Collective: the best `keep` (score, global id) of each local query row, sorted, scored in `low`
        (or x's precision), and a bound on the scores of the rows left out beyond the last kept (None here:
        the last kept's)."""
        x, me = self.x, rank()
        dtype = low or x.dtype          # of the scores: queries and blocks are converted once
        tiles = [(rid, q.to(dtype)) for rid, q in query_tiles(x, rows, self.q_rows)]
        best = [RunningTopK(keep, self.pending, ties=low is None) for _ in tiles]
        ids = torch.full((self.tile + GUARD,), PAD_ID, dtype=torch.long, device=x.device)
        rows_max = max((q.shape[0] for _, q in tiles), default=0)     # a few rows searched again: a small tile
        score_buf = x.new_empty((rows_max, self.tile + GUARD), dtype=dtype)
        for src, start, b0, m, blk in self.blocks():
            ids[:m], ids[m:] = self.gid[start:start + m], PAD_ID
            neg_sq = (-(blk * blk).sum(1)).to(dtype) if self.metric == "l2" else None
            blk = operand(blk.to(dtype), self.metric)
            for (rid, q), running in zip(tiles, best):
                s = score(q, blk, neg_sq, score_buf[:q.shape[0]], self.metric)[:len(rid)]
                s[:, m:] = float("-inf")
                if self.self_first and src == me:
                    mine = ((rid >= b0) & (rid < b0 + m)).nonzero().squeeze(1)
                    s[mine, rid[mine] - b0] = float("inf")
                running.add(s, ids)
        if not tiles:
            return (x.new_empty((0, keep), dtype=dtype), torch.empty((0, keep), dtype=torch.long,
                                                                     device=x.device), None)
        return (*(torch.cat(t) for t in zip(*(b.result() for b in best))), None)

    def rescored(self, rows, k: int, low: torch.dtype, rescore: int, b_max: float):
        """Collective: low-precision candidates re-scored exactly; uncertified queries searched again in full."""
        with rescore_.float32_accumulation(self.x.device):
            s, ids, bound = self.lists(rows, k + rescore, low)
        q = self.x[rows.start:rows.stop]
        pos = rescore_.positions(self.gid, ids, self.identity)
        exact = rescore_.exact_scores(q, pos, s, ((st, m, buf) for _, st, _, m, buf in self.blocks()), self.metric)
        e, i = lexsort_rows(exact, ids)
        e, i = e[:, :k], i[:, :k]
        last = s[:, -1] if bound is None else torch.maximum(s[:, -1], bound)    # no row left out scored more
        last = last.to(e.dtype)
        eps = rescore_.error_bound(low, q.shape[1], torch.linalg.vector_norm(q, dim=1), b_max, last, self.metric)
        ok = (last == float("-inf")) | (e[:, -1] > last + eps)
        bad = (~ok).nonzero().squeeze(1)
        again = torch.tensor([len(bad)], device=q.device)
        all_reduce_max(again)
        if int(again):
            e[bad], i[bad] = self.lists(bad + rows.start, k, None)[:2]
        return e, i, len(bad)
