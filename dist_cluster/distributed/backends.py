"""Which backend of the default process group serves which device and operation.

The launcher builds a group with a backend per device (`cpu:gloo,cuda:nccl`); a group made with one backend
only (a user's own `nccl` group) cannot serve CPU tensors, and `_served` then moves such a tensor to the
current CUDA device for the collective (the caller copies it back).
"""
from __future__ import annotations

import torch
import torch.distributed as dist


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
