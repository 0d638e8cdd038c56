"""Exact k nearest neighbours of every row of a data set whose rows are sharded across ranks.

Each rank holds a shard of the database; its queries are its own rows. The database is streamed to every
rank block by block (rank 0's blocks first, each broadcast by its owner, the next one prefetched while the
current one is scored), every local query is scored against every block, and a running top-k per query is
merged exactly. Ties are broken by the smaller global index, and each point is forced to be its own first
neighbour, so the lists do not depend on the number of ranks or the chunk size.

Memory per rank: its own shard (normalised once for cosine: a copy, or in place with `inplace=True`), the
global ids (N int64), two reused database buffers of `chunk` + 16 rows (default about 4096), one reused
score tile of `chunk` × (`chunk` + 16), and for the current round of queries their running top-k
(rows × k × (4 + 8) bytes, up to 9 times that for k ≤ 64 while block lists wait to be merged). Query tiles
are views of the shard (a partial last tile is copied, padded to a multiple of 64 rows). The device path's
score tile is q_rows × (tile + 16) (on CUDA within a quarter of the free memory, e.g. 16k × 64k) and its
state per query (k + 1) keys and scores.
Rounds keep the top-k state under `max_state_bytes`; each extra round streams the database once more. No N×N
matrix is ever formed. Each database block adds its own top-k to the running lists (selected through the
maxima of column groups, `topk.RunningTopK`; the lists are sorted once at the end).

`gemm_dtype=torch.bfloat16` or `torch.float16` (AMX on recent Xeons, tensor cores on GPUs) scores in that
precision and keeps each query's best `k + rescore` candidates, which are then scored again in the data's
precision; a query whose k-th exact score beats every other row's bound is certified exact, the others are
searched again in full precision (`dist_cluster.neighbors.rescore`), so the lists are those of the full
search either way. The default, "auto", does so in bfloat16 for float32 rows of 384+ columns where every
rank's device multiplies bfloat16 in hardware (`rescore.auto_dtype`); None searches in full precision only.

Two paths (`path`): "cpu", the default on CPU tensors (`search.Search`: each tile pair's exact top-k through
`topk.RunningTopK`, host syncs where ties need the ids), and "device", the default on CUDA
(`device_search.DeviceSearch`: tiles sized from free device memory, the selection through int64 keys that
order by score then id, cuts that the group maxima do not certify searched again once per round with the
CPU path's selection: one host sync per round). Both give the same lists from the same scores; on CPU tensors
the device path takes the CPU path's tiles (`chunk`), which is how its exactness is tested without a GPU.

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

from dist_cluster import hugepages
from dist_cluster.distributed import all_gather_nograd, all_gather_varlen, all_reduce_max
from dist_cluster.neighbors import keys as keys_
from dist_cluster.neighbors import rescore as rescore_
from dist_cluster.neighbors.device_search import DeviceSearch, cuda_tiles
from dist_cluster.neighbors.search import Search
from dist_cluster.neighbors.tiles import GUARD, PAD_ID, even_length, round_up

__all__ = ["GUARD", "PAD_ID", "METRICS", "PATHS", "Neighbors", "prepare", "iter_knn", "knn"]
METRICS = ("l2", "cosine")
PATHS = ("auto", "cpu", "device")


@dataclass
class Neighbors:
    index: torch.Tensor    # (n, k) int64 global ids, nearest first (self first unless self_first=False)
    dist: torch.Tensor     # (n, k) ascending; l2: Euclidean distance, cosine: 1 − cos
    searched_again: int = 0   # low-precision search: queries whose candidates were not certified
    recut: int = 0            # device path: rows whose cut the group maxima did not certify (searched again)


def prepare(x: torch.Tensor, metric: str, inplace: bool = False) -> torch.Tensor:
    """The vectors that are actually compared: L2-normalised rows for cosine, as given for l2."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if x.numel() and not all(bool(torch.isfinite(v)) for v in torch.aminmax(x)):    # one pass, no mask
        raise ValueError("features contain NaN or inf")
    if metric == "l2":
        return x.contiguous()
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)    # F.normalize's arithmetic
    if inplace and x.is_contiguous():
        return x.div_(norm)
    # the copy on huge pages where Linux offers them (100000×768: 88 → 27 ms)
    return torch.div(x, norm, out=hugepages.empty(x.shape, x.dtype, x.device))


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


CPU_TILE = (4096, 4096)      # query rows × database rows of a CPU score tile


def cpu_tiles(n_total: int) -> tuple[int, int]:
    """(query rows, database rows) per tile on CPU, from the data set's size only (so the same for any
    sharding): blocks of nearly equal length (a short last block is scored at full width), queries in tiles
    of CPU_TILE[0] rows."""
    return min(CPU_TILE[0], round_up(max(n_total, 1), 64)), even_length(n_total, CPU_TILE[1])


def _search(x, path, sizes, gid, identity, metric, self_first, chunk, nq, keep, dtype):
    """The CPU or the device search, with its tiles, and the bytes of top-k state per query row."""
    n_total = sum(sizes)
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    fits = n_total <= keys_.max_rows(x.dtype) - 1
    if path == "auto":
        path = "device" if x.device.type == "cuda" and fits else "cpu"
    if path == "device" and not fits:
        raise ValueError(f"path='device' keys {x.dtype} scores with {keys_.id_bits(x.dtype)}-bit ids: at most "
                         f"{keys_.max_rows(x.dtype) - 1} rows per call, got {n_total}")
    elem = torch.empty(0, dtype=dtype).element_size()
    if path == "device" and chunk is None and x.device.type == "cuda":
        q_rows, tile = cuda_tiles(x, sizes, nq, elem)
    elif chunk is None and path == "cpu":
        q_rows, tile = cpu_tiles(n_total)
    else:
        tile = q_rows = min(round_up(max(chunk or 4096, 1), 64), round_up(n_total, 64))
    if path == "device":
        return DeviceSearch(x, sizes, gid, tile, metric, self_first, 1, identity, q_rows), (keep + 1) * (elem + 8) * 2
    pending = 8 if keep <= 64 else 1        # blocks' lists kept aside before a merge (RunningTopK)
    return (Search(x, sizes, gid, tile, metric, self_first, pending, identity, q_rows),
            keep * (elem + 8) * (pending + 1))


def iter_knn(x: torch.Tensor, k: int, metric: str = "l2", index: torch.Tensor | None = None, chunk: int | None = None,
             max_state_bytes: int = 1 << 29, self_first: bool = True, n_queries: int | None = None,
             inplace: bool = False, gemm_dtype: torch.dtype | str | None = "auto", rescore: int = 32,
             path: str = "auto") -> Iterator[tuple[int, int, Neighbors]]:
    """Yield (start, stop, neighbours of local rows start:stop), one round at a time.

    Collective: every rank must drain the iterator. x: (n_local, d) this rank's rows; index: their global
    ids (default: rank-ordered contiguous ranges); chunk: query rows and database rows per tile (default
    `cpu_tiles` on CPU, sized from free memory by the device path on CUDA); n_queries: query only the first n local rows
    (all by default); inplace: normalise x itself for cosine; gemm_dtype/rescore: low-precision candidates;
    path: "cpu", "device" or "auto" (device on CUDA) (see module doc).
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
    keep = k + (rescore if gemm_dtype is not None else 0)
    nq = x.shape[0] if n_queries is None else min(n_queries, x.shape[0])
    search, per_row = _search(x, path, sizes, gid, index is None, metric, self_first, chunk, nq, keep,
                              gemm_dtype or x.dtype)
    step = search.q_rows
    rows_per_round = max(step, (max_state_bytes // per_row) // step * step)
    rounds = torch.tensor([-(-nq // rows_per_round)], device=x.device)
    all_reduce_max(rounds)
    b_max = 0.0
    if gemm_dtype is not None:      # the largest row norm, for the error bound
        b_max = float(all_reduce_max(torch.linalg.vector_norm(x, dim=1).amax().reshape(1) if len(x)
                                     else x.new_zeros(1)))

    for r in range(int(rounds)):
        start, stop = min(r * rows_per_round, nq), min((r + 1) * rows_per_round, nq)
        recut = getattr(search, "recut", 0)
        if gemm_dtype is None:
            score, idx, _ = search.lists(range(start, stop), k, None)
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
        yield start, stop, Neighbors(idx, d, again, getattr(search, "recut", 0) - recut)


def knn(x: torch.Tensor, k: int, metric: str = "l2", index: torch.Tensor | None = None, chunk: int | None = None,
        max_state_bytes: int = 1 << 29, self_first: bool = True, n_queries: int | None = None,
        inplace: bool = False, gemm_dtype: torch.dtype | str | None = "auto", rescore: int = 32,
        path: str = "auto") -> Neighbors:
    """The k nearest neighbours (global ids and distances) of every local row, aligned with x's rows."""
    parts = [nb for _, _, nb in iter_knn(x, k, metric, index, chunk, max_state_bytes, self_first, n_queries,
                                         inplace, gemm_dtype, rescore, path)]
    if not parts:
        return Neighbors(torch.empty((0, k), dtype=torch.long, device=x.device), x.new_empty((0, k)))
    return Neighbors(torch.cat([p.index for p in parts]), torch.cat([p.dist for p in parts]),
                     sum(p.searched_again for p in parts), sum(p.recut for p in parts))
