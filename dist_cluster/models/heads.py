"""Small heads on frozen pre-features: MLP builder, CgMCR²'s pre-feature layer, feature head, cluster head.

`GlobalBatchNorm1d` normalises with statistics of the GLOBAL batch when torch.distributed is initialised
(SyncBatchNorm semantics). torch.nn.SyncBatchNorm refuses CPU tensors ("expected input tensor to be on GPU"),
so the statistics are all-reduced here with autograd; it is a BatchNorm1d subclass, so state_dicts are the
plain BatchNorm1d ones and one process behaves exactly like nn.BatchNorm1d.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dist_cluster.distributed import all_reduce_sum, all_reduce_sum_with_grad, world_size


class GlobalBatchNorm1d(nn.BatchNorm1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        dtype = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(dtype)
        # the global count stays on the device (a 0-dim float64: the same rounding as a Python float)
        n = all_reduce_sum(torch.full((), float(x.shape[0]), dtype=torch.float64, device=x.device))
        mean = all_reduce_sum_with_grad(xf.sum(0)) / n
        centred = xf - mean
        var = all_reduce_sum_with_grad((centred * centred).sum(0)) / n
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach() * n / (n - 1.0).clamp_min(1.0))
        y = centred * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight.to(dtype) + self.bias.to(dtype)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked += 1
        m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
        self.running_var.mul_(1 - m).add_(unbiased_var.to(self.running_var.dtype), alpha=m)


def mlp(dims: Sequence[int], act: type[nn.Module] = nn.ReLU, norm: bool = False, last_act: bool = False
        ) -> nn.Sequential:
    """Linear layers through `dims` (in, hidden..., out) with `act` between them (and after the last if asked);
    `norm` puts a GlobalBatchNorm1d after every activated Linear."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2 or last_act:
            if norm:
                layers.append(GlobalBatchNorm1d(b))
            layers.append(act())
    return nn.Sequential(*layers)


def pre_feature_layer(in_dim: int, hidden: int) -> nn.Sequential:
    """CgMCR² Table A.2: Linear(D→hidden) → BatchNorm1d (global statistics) → ReLU, shared by both heads."""
    return mlp([in_dim, hidden], norm=True, last_act=True)


class FeatureHead(nn.Module):
    """f(·;Θ): (Linear → ReLU) × n_hidden → Linear(→d); returns (F un-normalised, Z = F/‖F‖ per row)."""

    def __init__(self, hidden: int, out_dim: int, n_hidden: int = 1):
        super().__init__()
        self.net = mlp([hidden] * (n_hidden + 1) + [out_dim])

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net(h)
        return f, F.normalize(f, dim=1)


class ClusterHead(nn.Module):
    """g(·;Φ): (Linear → ReLU) × n_hidden → Linear(→k) logits; memberships via `memberships`."""

    def __init__(self, hidden: int, k: int, n_hidden: int = 1):
        super().__init__()
        self.net = mlp([hidden] * (n_hidden + 1) + [k])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def memberships(logits: torch.Tensor, activation: str = "gumbel", tau: float = 1.0) -> torch.Tensor:
    """Π from logits: soft Gumbel-softmax (paper; τ = 1, no straight-through) or plain softmax (Table B.6).

    softmax((log_softmax(ℓ) + g)/τ) = softmax((ℓ + g)/τ), so torch's gumbel_softmax is the paper's formula.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if activation == "gumbel":
        return F.gumbel_softmax(logits, tau=tau, hard=False)
    if activation == "softmax":
        return torch.softmax(logits / tau, dim=1)
    raise ValueError(f"activation must be 'gumbel' or 'softmax', got {activation!r}")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
