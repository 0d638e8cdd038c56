"""Evaluation outputs from every rank, in global-index order."""
from __future__ import annotations

import torch

from dist_cluster.distributed import all_gather_varlen, backend_serves, is_dist


def bulk_device(t: torch.Tensor) -> torch.device:
    """Where a bulk gather of `t` should travel: the GPU (NCCL) when the group serves CUDA, else t's device."""
    if t.device.type == "cpu" and torch.cuda.is_available() and is_dist():
        cuda = torch.device("cuda", torch.cuda.current_device())
        if backend_serves(cuda):
            return cuda
    return t.device


@torch.no_grad()
def gather_in_index_order(index: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate (index, *tensors) from all ranks, sort by index, drop duplicate indices (padding).

    Host tensors travel over the GPU's backend where there is one (NCCL beats gloo by far for outputs this
    large) and come back on the device they were given on.
    """
    dev = bulk_device(index)
    idx = all_gather_varlen(index.long().to(dev)).to(index.device)
    outs = [all_gather_varlen(t.to(dev)).to(t.device) for t in tensors]
    order = torch.argsort(idx, stable=True)
    idx = idx[order]
    keep = torch.ones_like(idx, dtype=torch.bool)
    keep[1:] = idx[1:] != idx[:-1]
    return (idx[keep],) + tuple(o[order][keep] for o in outs)
