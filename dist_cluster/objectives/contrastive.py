"""Instance- and cluster-level contrastive losses (Contrastive Clustering; PICI Eq. 5-11, SPEC P3) over the
GLOBAL batch.

Each rank passes its own shard; the shards are all-gathered with autograd, so every rank computes the same
value as one process on the concatenated batch, and after the engine's data-parallel mean the same gradient
(convention of dist_cluster.distributed.collectives). Both losses are NT-Xent without the self term (SPEC
P7-4): anchor row i's positive is its other view, the remaining 2n − 2 rows are negatives. Computed in at
least float32 even under bf16 training.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dist_cluster.distributed import all_gather_with_grad

EPS = 1e-8


def _wide(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over the 2n rows of [a; b] of −log softmax(cos-sim/τ) at the other view, self excluded."""
    n = a.shape[0]
    x = F.normalize(torch.cat([a, b], dim=0), dim=1)
    sim = x @ x.T / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=x.device), float("-inf"))
    target = torch.arange(n, 3 * n, device=x.device) % (2 * n)   # made on the device: no blocking host copy
    return F.cross_entropy(sim, target)


def instance_loss(z_a: torch.Tensor, z_b: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """L_ins (Eq. 6): NT-Xent on the instance features of the global batch, 2N − 2 negatives per anchor."""
    return nt_xent(all_gather_with_grad(_wide(z_a)), all_gather_with_grad(_wide(z_b)), tau)


def entropy_penalty(c: torch.Tensor, form: str = "cc", eps: float = EPS) -> torch.Tensor:
    """Per view: Σ_i P_i log P_i of the batch-marginal cluster mass P (SPEC P7-5), plus log M in the CC form
    (0 at a uniform marginal, → log M at a one-hot one). The paper's −H(C) is the sum over both views."""
    if form not in ("cc", "paper"):
        raise ValueError(f"entropy form must be 'cc' or 'paper', got {form!r}")
    p = c.sum(dim=0) / c.sum()
    neg_h = (p * torch.log(p.clamp_min(eps))).sum()
    return neg_h + math.log(c.shape[1]) if form == "cc" else neg_h


def cluster_loss_parts(c_a: torch.Tensor, c_b: torch.Tensor, tau: float = 1.0, form: str = "cc",
                       eps: float = EPS) -> dict[str, torch.Tensor]:
    """{"contrast": (1/2M) Σ_i (ℓ̃_i^a + ℓ̃_i^b), "entropy": the two views' entropy penalties summed,
    "marginal_entropy": H of the global-batch marginal of view a (detached, for logging)}."""
    ga, gb = all_gather_with_grad(_wide(c_a)), all_gather_with_grad(_wide(c_b))
    p = (ga.sum(dim=0) / ga.sum()).detach()
    return {"contrast": nt_xent(ga.T, gb.T, tau),
            "entropy": entropy_penalty(ga, form, eps) + entropy_penalty(gb, form, eps),
            "marginal_entropy": -(p * torch.log(p.clamp_min(eps))).sum()}


def cluster_loss(c_a: torch.Tensor, c_b: torch.Tensor, tau: float = 1.0, form: str = "cc",
                 eps: float = EPS) -> torch.Tensor:
    """L_clu (Eq. 11): contrast of the M cluster columns over the global batch plus the entropy penalty."""
    parts = cluster_loss_parts(c_a, c_b, tau, form, eps)
    return parts["contrast"] + parts["entropy"]
