"""UNIC's figures: neighbour purity against k before/after cleaning, and the confusion matrix after Hungarian."""
from __future__ import annotations

import numpy as np

from dist_cluster.eval import contingency, hungarian_match


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def purity_figure(path: str, ks, before, after, kept_fraction: float, title: str = "") -> str:
    """before[i] / after[i]: fraction of the k = ks[i] nearest neighbours sharing the anchor's class, over all
    anchors / over the anchors whose positive set survives cleaning."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(ks, before, "o-", label="all anchors (no cleaning)")
    ax.plot(ks, after, "s-", label=f"kept after cleaning ({100 * kept_fraction:.0f}% of anchors)")
    ax.set_xscale("log")
    ax.set_xlabel("k (nearest neighbours, self excluded)")
    ax.set_ylabel("neighbour purity")
    ax.set_title(title or "positive-neighbour purity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def confusion_figure(path: str, y_true, y_pred, class_names=None, title: str = "") -> str:
    """Rows: true classes; columns: clusters, the one matched to each class (Hungarian) first, in class order,
    then unmatched clusters; each row normalised."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n_true = max(int(y_true.max()) + 1, len(class_names or []))
    n_pred = int(y_pred.max()) + 1
    mapping = hungarian_match(y_pred, y_true, n_pred, n_true)            # cluster → class (-1: unmatched)
    by_class = {int(c): k for k, c in enumerate(mapping) if c >= 0}
    cols = [by_class[c] for c in range(n_true) if c in by_class] + [k for k in range(n_pred) if mapping[k] < 0]
    cm = contingency(y_pred, y_true, n_pred, n_true).T[:, cols].astype(np.float64)
    cm /= np.maximum(cm.sum(1, keepdims=True), 1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(0.45 * len(cols) + 2.5, 0.45 * n_true + 2))
    im = ax.imshow(cm, vmin=0, vmax=1, cmap="Blues", aspect="auto")
    names = list(class_names) if class_names else [str(i) for i in range(n_true)]
    if max(n_true, len(cols)) <= 30:
        ax.set_xticks(range(len(cols)), [f"c{k}" for k in cols], rotation=90, fontsize=7)
        ax.set_yticks(range(n_true), names[:n_true], fontsize=7)
        for i in range(n_true):
            for j in range(len(cols)):
                if cm[i, j] >= 0.01:
                    ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if cm[i, j] > 0.5 else "black")
    ax.set_xlabel("cluster (matched to the class of the same row first)")
    ax.set_ylabel("true class")
    acc = float((mapping[y_pred] == y_true).mean())
    ax.set_title(title or f"confusion after Hungarian matching (ACC {acc:.3f})", fontsize=9)
    fig.colorbar(im, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
