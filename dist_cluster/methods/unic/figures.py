"""UNIC's figures: neighbour purity against k before/after cleaning (the confusion matrix is eval.figures')."""
from __future__ import annotations

from dist_cluster.eval.figures import confusion_figure, pyplot

__all__ = ["confusion_figure", "purity_figure"]


def purity_figure(path: str, ks, before, after, kept_fraction: float, title: str = "") -> str:
    """before[i] / after[i]: fraction of the k = ks[i] nearest neighbours sharing the anchor's class, over all
    anchors / over the anchors whose positive set survives cleaning."""
    plt = pyplot()
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
