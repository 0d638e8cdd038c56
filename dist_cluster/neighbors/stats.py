"""How good mined neighbours are, when labels exist (UNIC's figure of merit; SPEC U8 b).

Purity of a neighbour list = fraction of its members other than the anchor itself that share the anchor's
class. The false-negative rate is the fraction of an anchor's negatives (ranks ≥ τ2) that share its class,
to compare with the chance that a uniformly drawn point does: Σ_c p_c².
"""
from __future__ import annotations

import torch

from dist_cluster.neighbors.mining import clean_mask

QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def same_class_prior(labels: torch.Tensor) -> float:
    p = torch.bincount(labels.long()).double() / len(labels)
    return float((p * p).sum())


def neighbor_purity(neighbors: torch.Tensor, labels: torch.Tensor, k: int | None = None,
                    mask: torch.Tensor | None = None) -> float:
    """Purity of columns 1..k-1 (column 0 is the anchor), over the anchors in `mask`."""
    nb = neighbors[:, 1:k]
    y = labels.to(nb.device)
    rows = torch.arange(len(nb), device=nb.device) if mask is None else mask.nonzero().squeeze(1)
    if nb.shape[1] == 0 or len(rows) == 0:
        return float("nan")
    return float((y[nb[rows]] == y[rows, None]).double().mean())


def purity_at_k(neighbors: torch.Tensor, labels: torch.Tensor, ks, mask: torch.Tensor | None = None) -> dict:
    return {int(k): neighbor_purity(neighbors, labels, k + 1, mask) for k in ks if k + 1 <= neighbors.shape[1]}


def purity_vs_kept(positives: torch.Tensor, union_size: torch.Tensor, labels: torch.Tensor,
                   quantiles=QUANTILES) -> list[dict]:
    """For each quantile q of |U| used as η: the kept fraction and the purity of the kept anchors' positives."""
    rows = []
    for q in quantiles:
        mask, eta = clean_mask(union_size, eta_quantile=q)
        rows.append({"quantile": float(q), "eta": eta, "kept": float(mask.double().mean()),
                     "purity": neighbor_purity(positives, labels, None, mask)})
    return rows


def mining_stats(res, labels: torch.Tensor, same_below_tau2: torch.Tensor | None = None,
                 quantiles=QUANTILES) -> dict:
    """Positive accuracy before/after cleaning, the purity-vs-kept curve and the false-negative rate."""
    labels = labels.long()
    out = {"positive_accuracy": neighbor_purity(res.positives, labels),
           "clean_positive_accuracy": neighbor_purity(res.positives, labels, None, res.clean),
           "kept_fraction": float(res.clean.double().mean()),
           "eta": res.eta,
           "union_size_median": float(res.union_size.double().median()),
           "purity_vs_kept": purity_vs_kept(res.positives, res.union_size, labels, quantiles),
           "same_class_prior": same_class_prior(labels)}
    if same_below_tau2 is not None:
        n = len(labels)
        class_size = torch.bincount(labels)[labels].to(same_below_tau2.device)
        out["false_negative_rate"] = float(((class_size - same_below_tau2).double() / (n - res.tau2)).mean())
    return out
