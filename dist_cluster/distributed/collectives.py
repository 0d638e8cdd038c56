"""Collectives that keep autograd, plus small helpers that are no-ops on one process.

Gradient convention: a loss computed identically on every rank from gathered tensors gets, through the
backward of `all_gather_with_grad`, W times the one-process gradient on each rank's shard; the engine's
data-parallel mean over W ranks then gives exactly the one-process gradient. Per-sample losses that are
averaged locally need no gather: the data-parallel mean of equal-size local means is the global mean.
"""
from __future__ import annotations

import warnings

import torch
import torch.distributed as dist


# The autograd-aware collectives still work; their replacement (_functional_collectives) is a private API.
warnings.filterwarnings("ignore", message="torch.distributed.nn.functional", category=FutureWarning)


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def _check_equal_sizes(x: torch.Tensor) -> None:
    n = torch.tensor([x.shape[0]], dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"all_gather needs equal batch sizes on every rank, got {[int(s) for s in sizes]}; "
                         "use drop-remainder batching (the data layer does) or all_gather_varlen")


def all_gather_with_grad(x: torch.Tensor, check_sizes: bool = False) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0 (rank order); gradients flow back to each shard."""
    if not is_dist() or world_size() == 1:
        return x
    if check_sizes:
        _check_equal_sizes(x)
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(x.contiguous()), dim=0)


@torch.no_grad()
def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    if not is_dist() or world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


@torch.no_grad()
def all_gather_varlen(x: torch.Tensor) -> torch.Tensor:
    """Concatenate tensors whose first dim differs across ranks (no gradient)."""
    if not is_dist() or world_size() == 1:
        return x
    n = torch.tensor([x.shape[0]], dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    pad = x.new_zeros((max(sizes) - x.shape[0],) + tuple(x.shape[1:]))
    out = [x.new_empty((max(sizes),) + tuple(x.shape[1:])) for _ in sizes]
    dist.all_gather(out, torch.cat([x, pad]).contiguous())
    return torch.cat([o[:s] for o, s in zip(out, sizes)])


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks; the backward sums the incoming gradients too (same W-scaling as the gather)."""
    if not is_dist() or world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_reduce
    return all_reduce(x, op=dist.ReduceOp.SUM)


@torch.no_grad()
def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if is_dist() and world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


@torch.no_grad()
def broadcast(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    if is_dist() and world_size() > 1:
        dist.broadcast(x, src)
    return x


def broadcast_object(obj, src: int = 0):
    if not is_dist() or world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def barrier() -> None:
    if is_dist() and world_size() > 1:
        dist.barrier()
