"""UNIC's secondary evaluation numbers: GCD protocol v1 and k-means on the current embeddings (paper Fig. 7)."""
from __future__ import annotations

import numpy as np

from dist_cluster.distributed import main_only
from dist_cluster.eval import cluster_acc, cluster_metrics


def gcd_accuracy_v1(y_true, y_pred, old_classes) -> dict[str, float]:
    """Vaze et al. 2022 "v1": All with one Hungarian over D_U; Old and New each with their own Hungarian."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    old = np.isin(t, np.asarray(list(old_classes)))
    nan = float("nan")
    return {"all": cluster_acc(t, p), "old": cluster_acc(t[old], p[old]) if old.any() else nan,
            "new": cluster_acc(t[~old], p[~old]) if (~old).any() else nan}


def kmeans_metrics(embeddings, y_true, k: int, seed: int, n_init: int = 10) -> dict[str, float]:
    """ACC/NMI/ARI of scikit-learn k-means on the embeddings (computed on rank 0, shared with all ranks)."""
    def fit():
        from sklearn.cluster import KMeans
        pred = KMeans(k, n_init=n_init, random_state=seed).fit_predict(np.asarray(embeddings, dtype=np.float32))
        return cluster_metrics(y_true, pred)
    return main_only(fit)
