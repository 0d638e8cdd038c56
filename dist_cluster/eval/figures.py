"""Figures every method draws the same way: the Hungarian-matched confusion matrix and learning curves."""
from __future__ import annotations

import os

import numpy as np

from dist_cluster.eval.cluster_metrics import contingency, hungarian_match
from dist_cluster.logging.metrics import read_records


def pyplot():
    """matplotlib's pyplot on the file-only backend (runs on nodes without a display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


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
    plt = pyplot()
    # a page-sized figure however many clusters (1,000 columns at 0.45 in would be a 54,000-pixel image)
    fig, ax = plt.subplots(figsize=(min(0.45 * len(cols) + 2.5, 20), min(0.45 * n_true + 2, 16)))
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
    ax.set_title(f"{title + ' ' if title else ''}confusion after Hungarian matching (ACC {acc:.3f})", fontsize=9)
    fig.colorbar(im, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def learning_curves(metrics_path: str, path: str, terms: dict[str, str], separate: bool = False,
                    eval_keys: tuple[str, ...] = ("acc", "nmi", "ari")) -> str | None:
    """Loss terms against the optimizer step (one panel each when `separate`), stage changes dotted, and the
    evaluations' metrics in the last panel."""
    run_dir = os.path.dirname(metrics_path)
    train, evals = read_records(run_dir, "train"), read_records(run_dir, "eval")
    if not train and not evals:
        return None
    plt = pyplot()
    n_loss = len(terms) if separate else 1
    fig, axes = plt.subplots(1, n_loss + 1, figsize=(4.5 * (n_loss + 1), 3.8), squeeze=False)
    axes = axes[0]
    switch = [b["step"] for a, b in zip(train, train[1:]) if a.get("stage") != b.get("stage")]
    for i, (key, label) in enumerate(terms.items()):
        ax = axes[i if separate else 0]
        pts = [(r["step"], r[key]) for r in train if key in r]
        if pts:
            ax.plot(*zip(*pts), lw=1, label=label)
        ax.set_title(label if separate else "loss terms", fontsize=9)
        ax.set_xlabel("optimizer step")
    for ax in axes[:n_loss]:
        for s in switch:
            ax.axvline(s, color="grey", ls=":", lw=1)
    for key in eval_keys:
        pts = [(r["step"], r[key]) for r in evals if key in r]
        if pts:
            axes[-1].plot(*zip(*pts), "o-", ms=3, label=key.upper())
    axes[-1].set_title("evaluation", fontsize=9)
    axes[-1].set_xlabel("optimizer step")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
