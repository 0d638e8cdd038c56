"""The tiles of the exact kNN search: database blocks streamed from every rank, query tiles, one score GEMM.

Every database block has the same shape (short ones are zero-padded, GUARD zero rows at the end) and query
tiles are padded to a multiple of 64 rows (BLAS rounds products of fewer rows differently), so a pair's score
does not depend on the sharding, and exact duplicates in the database get exactly equal scores.
"""
from __future__ import annotations

from typing import Iterator

import torch

from dist_cluster import cpu_gemm
from dist_cluster.distributed import broadcast_async, rank, world_size
from dist_cluster.neighbors.topk import PAD_ID  # noqa: F401  (padding rows of the blocks score -inf)
from dist_cluster.precision import exact_float32

# MKL's dgemm rounds the last few columns of a product differently from the others; zero guard rows at the
# end of every database block keep each real pair out of them, so its score does not depend on its position
GUARD = 16


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def even_length(n: int, cap: int) -> int:
    """Length of the blocks that cut n rows into as few nearly equal blocks of at most `cap` rows as possible,
    rounded up to a multiple of 64 (so a short last block is not scored at full width)."""
    n = max(n, 1)
    return round_up(-(-n // -(-n // cap)), 64)


def database_blocks(x: torch.Tensor, sizes: list[int], tile: int) -> Iterator[tuple[int, int, int, torch.Tensor]]:
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


def query_tiles(x: torch.Tensor, rows, tile: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
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
            q = torch.cat([q, q.new_zeros((round_up(len(part), 64) - len(part), x.shape[1]))])
        out.append((part, q))
    return out


def operand(blk: torch.Tensor, metric: str) -> torch.Tensor:
    """A database block as `score` multiplies it, made once per block: for l2 through oneDNN (which has no
    alpha) the block doubled."""
    return blk * 2 if metric == "l2" and cpu_gemm.takes_onednn(blk, blk) else blk


@exact_float32()
def score(q, w, neg_sq, out, metric):
    """Scores (rows of q) × (rows of the block whose `operand` is w): q·b for cosine, 2 q·b − ‖b‖² for l2 (same
    order per query); in `out` or a new tile (float32 on CPU goes to oneDNN, `cpu_gemm`). Doubling is exact, so
    (2b)·q + (−‖b‖²) is 2 q·b − ‖b‖² with one rounding of the sum either way."""
    if cpu_gemm.takes_onednn(q, w):
        return cpu_gemm.linear(q, w, neg_sq if metric == "l2" else None)
    if metric == "l2":
        return torch.addmm(neg_sq, q, w.T, alpha=2, out=out)
    return torch.mm(q, w.T, out=out)
