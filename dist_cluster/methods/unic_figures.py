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
    """Rows: true class; columns: the cluster matched to that class (Hungarian), normalised per row."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = int(max(y_true.max(), y_pred.max())) + 1
    mapping = hungarian_match(y_pred, y_true, k, k)
    cm = contingency(mapping[y_pred], y_true, k, k).T.astype(np.float64)   # (true, matched prediction)
    cm /= np.maximum(cm.sum(1, keepdims=True), 1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(0.45 * k + 2.5, 0.45 * k + 2))
    im = ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if k <= 30:
        ax.set_xticks(range(k), names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), names, fontsize=7)
        for i in range(k):
            for j in range(k):
                if cm[i, j] >= 0.01:
                    ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if cm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted cluster (matched to class)")
    ax.set_ylabel("true class")
    acc = float((mapping[y_pred] == y_true).mean())
    ax.set_title(title or f"confusion after Hungarian matching (ACC {acc:.3f})", fontsize=9)
    fig.colorbar(im, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
