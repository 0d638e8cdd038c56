"""UNIC's neighbour losses (SPEC U4, paper Eq. 6-9) over the global batch.

    L = (1/B) Σ_b [λ_pos·L_pos(b) + λ_neg·L_neg(b)] − λ_ent·H((1/B) Σ_b ŷ_b)

with L_pos = −log⟨ŷ_i, ŷ_p⟩ and L_neg = −log(1 − ⟨ŷ_i, ŷ_n⟩) (binary cross entropy of the dot product, its
argument clamped to [ε, 1−ε]) and H the entropy of the batch-marginal cluster distribution of the anchors.
B is the GLOBAL batch: the per-sample sums and the anchors' probability sums are all-reduced with autograd,
so every rank computes the same value and, after the engine's data-parallel mean of gradients, the same
gradient as one process on the concatenated batch (convention of dist_cluster.distributed.collectives).
Inputs are probabilities; compute them in float32 or float64 even under bf16 training.
"""
from __future__ import annotations

import torch

from dist_cluster.distributed import all_reduce_sum_with_grad

EPS = 1e-7


def _dot(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return (a * b).sum(dim=1).clamp(eps, 1.0 - eps)


def pos_loss(p_anchor: torch.Tensor, p_pos: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Per-sample L_pos = H_b(⟨ŷ_i, ŷ_p⟩, 1) = −log⟨ŷ_i, ŷ_p⟩, shape (B,)."""
    return -torch.log(_dot(p_anchor, p_pos, eps))


def neg_loss(p_anchor: torch.Tensor, p_neg: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Per-sample L_neg = H_b(⟨ŷ_i, ŷ_n⟩, 0) = −log(1 − ⟨ŷ_i, ŷ_n⟩), shape (B,)."""
    return -torch.log1p(-_dot(p_anchor, p_neg, eps))


def entropy(p_mean: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """H(ȳ) = −Σ_k ȳ_k log ȳ_k of one distribution (clamped below at eps, as SCAN does)."""
    q = p_mean.clamp_min(eps)
    return -(q * torch.log(q)).sum()


def global_marginal(p_anchor: torch.Tensor) -> torch.Tensor:
    """ȳ = mean of the anchors' probabilities over the global batch, with autograd through the all-reduce."""
    stats = torch.cat([p_anchor.sum(dim=0), p_anchor.new_full((1,), p_anchor.shape[0])])
    stats = all_reduce_sum_with_grad(stats)
    return stats[:-1] / stats[-1]


def marginal_entropy(p_anchor: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Entropy of the global batch-marginal (the quantity maximised by UNIC's entropy term)."""
    return entropy(global_marginal(p_anchor), eps)


def unic_losses(p_anchor: torch.Tensor, p_pos: torch.Tensor | None = None, p_neg: torch.Tensor | None = None,
                eps: float = EPS) -> dict[str, torch.Tensor]:
    """The three unweighted terms over the global batch: {"pos", "neg", "ent"}, with "ent" = −H(ȳ).

    Terms whose neighbour is None are left out. One all-reduce carries every sum (a single collective per
    step). Each returned value is identical on every rank.
    """
    k, n = p_anchor.shape[1], p_anchor.shape[0]
    parts = [p_anchor.sum(dim=0)]
    if p_pos is not None:
        parts.append(pos_loss(p_anchor, p_pos, eps).sum().reshape(1))
    if p_neg is not None:
        parts.append(neg_loss(p_anchor, p_neg, eps).sum().reshape(1))
    parts.append(p_anchor.new_full((1,), n))
    stats = all_reduce_sum_with_grad(torch.cat(parts))
    count = stats[-1]
    out = {}
    i = k
    if p_pos is not None:
        out["pos"] = stats[i] / count
        i += 1
    if p_neg is not None:
        out["neg"] = stats[i] / count
    out["ent"] = -entropy(stats[:k] / count, eps)
    return out


def unic_objective(p_anchor: torch.Tensor, p_pos: torch.Tensor | None, p_neg: torch.Tensor | None,
                   lambda_pos: float = 1.0, lambda_neg: float = 1.0, lambda_ent: float = 3.0,
                   eps: float = EPS) -> torch.Tensor:
    """The mini-batch objective of SPEC U4 (entropy subtracted: maximum-entropy regulariser)."""
    t = unic_losses(p_anchor, p_pos if lambda_pos else None, p_neg if lambda_neg else None, eps)
    total = lambda_ent * t["ent"]
    if "pos" in t:
        total = total + lambda_pos * t["pos"]
    if "neg" in t:
        total = total + lambda_neg * t["neg"]
    return total
