"""Every collective the package issues, correct on CPU and CUDA tensors and cheap on GPUs.

Gradient convention: a loss computed identically on every rank from gathered tensors gets, through the
backward of `all_gather_with_grad`, W times the one-process gradient on each rank's shard; the engine's
data-parallel mean over W ranks then gives exactly the one-process gradient. Per-sample losses that are
averaged locally need no gather: the data-parallel mean of equal-size local means is the global mean.

Devices: bulk data moves on the device it lives on (NCCL for CUDA tensors) and small control values may stay
on the CPU; a tensor whose device the group has no backend for goes through `backends._served` and back, so
no call here fails for its device.

Operations: which backend serves which tensor operation on which device is one table (`backends._OPS`); the autograd
gather uses the single-tensor gather and reduce-scatter where the device's backend has them, else a list gather
and an all-reduce (every backend has those). Nothing here calls `all_to_all` (gloo lacks it for CUDA tensors).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from dist_cluster.distributed.backends import _gather_single, _reduce_scatter_single, _served, backend_serves, serves


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def _multi() -> bool:
    return is_dist() and world_size() > 1


def _sizes(n: int, device: torch.device) -> list[int]:
    """Every rank's row count (one small all_gather on the data's device)."""
    t = _served(torch.tensor([n], dtype=torch.long, device=device))
    out = [torch.zeros_like(t) for _ in range(world_size())]
    dist.all_gather(out, t)
    return [int(s) for s in out]


def _check_equal_sizes(x: torch.Tensor) -> None:
    sizes = _sizes(x.shape[0], x.device)
    if len(set(sizes)) != 1:
        raise ValueError(f"all_gather needs equal batch sizes on every rank, got {sizes}; "
                         "use drop-remainder batching (the data layer does) or all_gather_varlen")


def _gather_rows(y: torch.Tensor) -> torch.Tensor:
    """Equal-size shards of every rank concatenated along dim 0, in rank order."""
    if serves("all_gather_into_tensor", y.device):
        out = y.new_empty((world_size() * y.shape[0],) + tuple(y.shape[1:]))
        _gather_single(out, y)
        return out
    parts = [torch.empty_like(y) for _ in range(world_size())]
    dist.all_gather(parts, y)
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """Forward: the rows of every rank. Backward: this rank's rows of the sum over ranks of the incoming
    gradients (reduce-scatter, or all-reduce and a slice where the backend has no reduce-scatter)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        ctx.rows = y.shape[0]
        return _gather_rows(y)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.contiguous()
        if serves("reduce_scatter_tensor", g.device):
            out = g.new_empty((ctx.rows,) + tuple(g.shape[1:]))
            _reduce_scatter_single(out, g)
            return out
        g = g.clone()
        dist.all_reduce(g)
        return g[rank() * ctx.rows:(rank() + 1) * ctx.rows]


def all_gather_with_grad(x: torch.Tensor, check_sizes: bool = False) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0 (rank order); gradients flow back to each shard."""
    if not _multi():
        return x
    if check_sizes:
        _check_equal_sizes(x)
    return _GatherWithGrad.apply(_served(x).contiguous()).to(x.device)


@torch.no_grad()
def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    if not _multi():
        return x
    return _gather_rows(_served(x).contiguous()).to(x.device)


@torch.no_grad()
def all_gather_varlen(x: torch.Tensor) -> torch.Tensor:
    """Concatenate tensors whose first dim differs across ranks (no gradient)."""
    if not _multi():
        return x
    sizes = _sizes(x.shape[0], x.device)
    y = _served(x)
    pad = y.new_zeros((max(sizes) - y.shape[0],) + tuple(y.shape[1:]))
    out = [y.new_empty((max(sizes),) + tuple(y.shape[1:])) for _ in sizes]
    dist.all_gather(out, torch.cat([y, pad]).contiguous())
    return torch.cat([o[:s] for o, s in zip(out, sizes)]).to(x.device)


class _SumWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        y = y.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        g = g.clone()
        dist.all_reduce(g)
        return g


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks; the backward sums the incoming gradients too (same W-scaling as the gather)."""
    if not _multi():
        return x
    return _SumWithGrad.apply(_served(x).contiguous()).to(x.device)


@torch.no_grad()
def _all_reduce(x: torch.Tensor, op) -> torch.Tensor:
    if _multi():
        y = _served(x)
        dist.all_reduce(y, op=op)
        if y is not x:
            x.copy_(y)
    return x


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """In place; returns x."""
    return _all_reduce(x, dist.ReduceOp.SUM)


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    """In place; returns x."""
    return _all_reduce(x, dist.ReduceOp.MAX)


@torch.no_grad()
def broadcast(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In place; returns x."""
    if _multi():
        y = _served(x)
        dist.broadcast(y, src)
        if y is not x:
            x.copy_(y)
    return x


def broadcast_async(x: torch.Tensor, src: int):
    """Start broadcasting `x` (in place) and return a handle with `.wait()`; None on one process.

    `x` must be on a device the group serves (the compute device): an async copy back could not be ordered.
    """
    if not _multi():
        return None
    if not backend_serves(x.device):
        raise ValueError(f"broadcast_async: the process group has no backend for {x.device} tensors")
    return dist.broadcast(x, src, async_op=True)


@torch.no_grad()
def gather_to(x: torch.Tensor, dst: int = 0) -> list[torch.Tensor] | None:
    """Rank dst receives every rank's `x` (equal shapes) as a list; other ranks get None."""
    if not _multi():
        return [x]
    y = _served(x).contiguous()
    parts = [torch.empty_like(y) for _ in range(world_size())] if rank() == dst else None
    dist.gather(y, parts, dst=dst)
    return [p.to(x.device) for p in parts] if parts is not None else None


def barrier() -> None:
    if _multi():
        dist.barrier()
