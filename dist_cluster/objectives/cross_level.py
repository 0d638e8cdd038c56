"""Cross-level interaction (PICI Eq. 12-15, SPEC P3/P7-6..8): k-means pseudo-labels from the instance space,
renamed into the cluster head's index space by Hungarian matching, supervise the cluster head.

`cli_loss` is the mean over the GLOBAL batch (per-rank sums all-reduced with autograd), so its value is the
same on every rank and its gradient follows the convention of dist_cluster.distributed.collectives.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dist_cluster.distributed import all_gather_nograd, all_reduce_sum_with_grad
from dist_cluster.eval import hungarian_match

EPS = 1e-8
CE_MODES = ("nll", "reference_double_softmax")


def match_pseudo_labels(pseudo, head, num_clusters: int) -> torch.Tensor:
    """w: mapping[s] = the head cluster m that k-means cluster s is matched to, maximising
    #{i : q_i = m, p_i = s} over one-to-one assignments (scipy's linear_sum_assignment)."""
    mapping = hungarian_match(pseudo, head, num_clusters, num_clusters)
    if (mapping < 0).any():   # only when M exceeds the assignment's size; cannot happen for square W
        raise ValueError("Hungarian matching left a pseudo-label unmatched")
    return torch.as_tensor(np.asarray(mapping), dtype=torch.long)


@torch.no_grad()
def match_global_batch(pseudo: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Matching on the global mini-batch (reference `match_scope: batch`): gathers p and argmax C (no grad).
    The assignment is solved on the host: p and q travel there in one copy (one host sync, one gather)."""
    pq = all_gather_nograd(torch.stack([pseudo.long(), probs.argmax(dim=1)], dim=1)).cpu()
    return match_pseudo_labels(pq[:, 0], pq[:, 1], probs.shape[1]).to(pseudo.device)


def _global_mean(per_sample: torch.Tensor) -> torch.Tensor:
    count = per_sample.new_full((), per_sample.numel())   # a fill: new_tensor would copy from the host
    stats = all_reduce_sum_with_grad(torch.stack([per_sample.sum(), count]))
    return stats[0] / stats[1]


def cli_view_loss(probs: torch.Tensor, target: torch.Tensor, mode: str = "nll", eps: float = EPS) -> torch.Tensor:
    """−(1/N) Σ_i log C_{i, p̃_i} over the global batch (Eq. 15 as a mean, C clamped at ≥ eps).

    mode "reference_double_softmax": the reference code's CrossEntropyLoss applied to the probabilities
    (a second softmax), kept for parity (SPEC P7-7)."""
    probs = probs if probs.dtype in (torch.float32, torch.float64) else probs.float()
    if mode == "nll":
        per_sample = -torch.log(probs.clamp_min(eps)).gather(1, target.view(-1, 1)).squeeze(1)
    elif mode == "reference_double_softmax":
        per_sample = F.cross_entropy(probs, target, reduction="none")
    else:
        raise ValueError(f"cli_ce must be one of {CE_MODES}, got {mode!r}")
    return _global_mean(per_sample)


def cli_loss(c_a: torch.Tensor, c_b: torch.Tensor, target_a: torch.Tensor, target_b: torch.Tensor,
             mode: str = "nll", eps: float = EPS) -> torch.Tensor:
    """L_CLI = ½ (CE(C^a, p̃^a) + CE(C^b, p̃^b)); targets are the matched pseudo-labels (class indices)."""
    return 0.5 * (cli_view_loss(c_a, target_a, mode, eps) + cli_view_loss(c_b, target_b, mode, eps))
