"""Clustering and classification metrics, computed over the whole evaluation set.

ACC is the best one-to-one matching of predicted clusters to classes (Hungarian via scipy); NMI and ARI are
scikit-learn's. NMI's normalisation is arithmetic unless a method asks otherwise (CgMCR²'s code: geometric).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def contingency(y_pred, y_true, n_pred: int | None = None, n_true: int | None = None) -> np.ndarray:
    p, t = _np(y_pred).astype(np.int64), _np(y_true).astype(np.int64)
    n_pred = n_pred or int(p.max(initial=-1)) + 1
    n_true = n_true or int(t.max(initial=-1)) + 1
    w = np.zeros((n_pred, n_true), dtype=np.int64)
    np.add.at(w, (p, t), 1)
    return w


def hungarian_match(y_pred, y_true, n_pred: int | None = None, n_true: int | None = None) -> np.ndarray:
    """mapping[c] = the class that predicted cluster c is matched to (-1 when no class is left for it)."""
    w = contingency(y_pred, y_true, n_pred, n_true)
    rows, cols = linear_sum_assignment(w, maximize=True)
    mapping = np.full(w.shape[0], -1, dtype=np.int64)
    mapping[rows] = cols
    return mapping


def cluster_acc(y_true, y_pred) -> float:
    p = _np(y_pred).astype(np.int64)
    mapping = hungarian_match(p, y_true)
    return float((mapping[p] == _np(y_true)).mean())


def cluster_metrics(y_true, y_pred, nmi_average: str = "arithmetic") -> dict[str, float]:
    t, p = _np(y_true), _np(y_pred)
    return {"acc": cluster_acc(t, p),
            "nmi": float(normalized_mutual_info_score(t, p, average_method=nmi_average)),
            "ari": float(adjusted_rand_score(t, p))}


def gcd_accuracy(y_true, y_pred, old_classes) -> dict[str, float]:
    """GCD protocol v2 (Vaze et al.): one Hungarian over all classes, then accuracy on old / new subsets."""
    t, p = _np(y_true).astype(np.int64), _np(y_pred).astype(np.int64)
    k = max(int(t.max()), int(p.max())) + 1
    mapping = hungarian_match(p, t, k, k)
    hit = mapping[p] == t
    old = np.isin(t, np.asarray(list(old_classes)))
    return {"all": float(hit.mean()), "old": float(hit[old].mean()) if old.any() else float("nan"),
            "new": float(hit[~old].mean()) if (~old).any() else float("nan")}


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    top = logits.topk(max(ks), dim=1).indices
    hit = top == y.view(-1, 1)
    return {f"top{k}": float(hit[:, :k].any(dim=1).float().mean()) for k in ks}
