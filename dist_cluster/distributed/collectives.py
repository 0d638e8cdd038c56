"""Every collective the package issues, correct on CPU and CUDA tensors and cheap on GPUs.

Gradient convention: a loss computed identically on every rank from gathered tensors gets, through the
backward of `all_gather_with_grad`, W times the one-process gradient on each rank's shard; the engine's
data-parallel mean over W ranks then gives exactly the one-process gradient. Per-sample losses that are
averaged locally need no gather: the data-parallel mean of equal-size local means is the global mean.

Devices: the launcher builds a group with a backend per device (`cpu:gloo,cuda:nccl`), so bulk data moves
on the device it lives on (NCCL for CUDA tensors) and small control values may stay on the CPU. A group made
with one backend only (a user's own `nccl` group) cannot serve CPU tensors; `_served` then moves such a
tensor to the current CUDA device for the collective and back, so no call here fails for its device.

Operations: which backend serves which tensor operation on which device is one table (`_OPS`); the autograd
gather uses the single-tensor gather and reduce-scatter where the device's backend has them, else a list gather
and an all-reduce (every backend has those). Nothing here calls `all_to_all` (gloo lacks it for CUDA tensors).
"""
from __future__ import annotations

import datetime

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def _multi() -> bool:
    return is_dist() and world_size() > 1


def device_backend(device: torch.device) -> str | None:
    """The default group's backend for tensors on `device`, or None when it has none."""
    backend = str(dist.get_backend()).lower()
    if "," in backend or ":" in backend:   # "cpu:gloo,cuda:nccl", "cpu:gloo,cuda:gloo"
        return dict(part.split(":") for part in backend.split(",")).get(device.type)
    if backend == "gloo":                  # gloo alone serves CPU and CUDA tensors
        return backend
    return backend if device.type == "cuda" else None


def backend_serves(device: torch.device) -> bool:
    """Whether the default group has a backend for tensors on `device`."""
    return device_backend(device) is not None


# Single-tensor operations each (backend, device) serves, besides the list all_gather and all_reduce that
# all serve. gloo's single-tensor gather and reduce-scatter exist for CPU tensors only.
_OPS = {("nccl", "cuda"): {"all_gather_into_tensor", "reduce_scatter_tensor"},
        ("gloo", "cpu"): {"all_gather_into_tensor", "reduce_scatter_tensor"}}


def serves(op: str, device: torch.device) -> bool:
    return op in _OPS.get((device_backend(device), device.type), ())


# torch ≥ 2.14 names them all_gather_single / reduce_scatter_single; older releases have only the old names
_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def _served(x: torch.Tensor) -> torch.Tensor:
    if backend_serves(x.device):
        return x
    return x.to(torch.device("cuda", torch.cuda.current_device()) if x.device.type == "cpu" else "cpu")


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


def gather_object_to(obj, dst: int = 0) -> list | None:
    """Rank dst receives every rank's picklable `obj` as a list (rank order); other ranks get None."""
    if not _multi():
        return [obj]
    out = [None] * world_size() if rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def broadcast_object(obj, src: int = 0):
    if not _multi():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def barrier() -> None:
    if _multi():
        dist.barrier()


# Rank-0-only work (the final report, baselines, figures) can take far longer than a training collective may
# wait; the other ranks wait for it on a group of their own whose timeout covers it.
MAIN_ONLY_TIMEOUT = datetime.timedelta(hours=12)
_patient = {"world": None, "group": None}


def _patient_group():
    if _patient["world"] is not dist.group.WORLD:      # a new default group (runs may share a process)
        _patient.update(world=dist.group.WORLD, group=dist.new_group(backend="gloo", timeout=MAIN_ONLY_TIMEOUT))
    return _patient["group"]


def main_only(fn, *args, **kwargs):
    """fn(*args, **kwargs) on rank 0 only, called by every rank; the others wait for it (up to MAIN_ONLY_TIMEOUT,
    whatever the training group's timeout) and get its result. An error on rank 0 is raised on every rank."""
    if not _multi():
        return fn(*args, **kwargs)
    group, out, err = _patient_group(), None, None
    if rank() == 0:
        try:
            out = fn(*args, **kwargs)
        except BaseException as e:   # the others must not wait out the timeout for a result that never comes
            err = e
    box = [(err is None, out if err is None else f"{type(err).__name__}: {err}")]
    dist.broadcast_object_list(box, src=0, group=group)
    if err is not None:
        raise err
    ok, value = box[0]
    if not ok:
        raise RuntimeError(f"rank 0 failed in {getattr(fn, '__qualname__', fn)}: {value}")
    return value
