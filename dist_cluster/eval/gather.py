"""Evaluation outputs from every rank, in global-index order."""
from __future__ import annotations

import torch

from dist_cluster.distributed import all_gather_varlen


@torch.no_grad()
def gather_in_index_order(index: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate (index, *tensors) from all ranks, sort by index, drop duplicate indices (padding)."""
    idx = all_gather_varlen(index.long())
    outs = [all_gather_varlen(t) for t in tensors]
    order = torch.argsort(idx, stable=True)
    idx = idx[order]
    keep = torch.ones_like(idx, dtype=torch.bool)
    keep[1:] = idx[1:] != idx[:-1]
    return (idx[keep],) + tuple(o[order][keep] for o in outs)
