"""CgMCR²'s figures (PNG): affinity matrices ordered by cluster and by class (paper Fig. 2 / B.2), cluster
sizes, the Hungarian-matched confusion matrix and the learning curves of −R, Rc, L_Ncut, ACC, NMI (Fig. 3,
B.3, B.4) read back from metrics.jsonl."""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from dist_cluster.eval.figures import confusion_figure, learning_curves, pyplot


def _subsample(n: int, limit: int, seed: int = 0) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def affinity_figure(ev: dict, order_by: np.ndarray, title: str, path: str, limit: int) -> str:
    sel = _subsample(len(order_by), limit)
    sel = sel[np.argsort(order_by[sel], kind="stable")]
    x = F.normalize(ev["x"][sel].float(), dim=1)
    z = ev["z"][sel]
    pi = torch.softmax(ev["logits"][sel], dim=1)
    panels = [("|XᵀX| pre-features", (x @ x.T).abs()), ("|ZᵀZ| features", (z @ z.T).abs()),
              ("ΠΠᵀ memberships", pi @ pi.T)]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    bounds = np.flatnonzero(np.diff(order_by[sel])) + 0.5
    for ax, (name, mat), cmap in zip(axes, panels, ("Blues", "Blues", "Reds")):
        ax.imshow(mat.numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        for b in bounds:
            ax.axhline(b, color="k", lw=0.3)
            ax.axvline(b, color="k", lw=0.3)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def cluster_size_figure(labels: np.ndarray, y: np.ndarray | None, k: int, path: str) -> str:
    sizes = np.sort(np.bincount(labels, minlength=k))[::-1]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(np.arange(len(sizes)), sizes, label="predicted clusters")
    if y is not None:
        classes = np.sort(np.bincount(y))[::-1]
        ax.plot(np.arange(len(classes)), classes, "k.--", label="true classes")
    ax.set_xlabel("cluster (largest first)")
    ax.set_ylabel("samples")
    ax.set_title(f"cluster sizes ({int((sizes > 0).sum())} of {k} used)")
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_all(ev: dict, m, run_dir: str, figures_dir: str) -> list[str]:
    labels, y = ev["labels"].numpy(), ev["y"].numpy()
    labelled = bool((y >= 0).all())     # figures against the classes need labels
    out = [affinity_figure(ev, labels, "ordered by predicted cluster",
                           os.path.join(figures_dir, "affinity_by_cluster.png"), m.figure_points),
           cluster_size_figure(labels, y if labelled else None, m.k, os.path.join(figures_dir, "cluster_sizes.png")),
           learning_curves(os.path.join(run_dir, "metrics.jsonl"), os.path.join(figures_dir, "learning_curves.png"),
                           {"loss/R": "−R", "loss/Rc": "Rc", "loss/ncut": "L_Ncut"}, separate=True,
                           eval_keys=("acc", "nmi"))]
    if labelled:
        out += [affinity_figure(ev, y, "ordered by true class", os.path.join(figures_dir, "affinity_by_class.png"),
                                m.figure_points),
                confusion_figure(os.path.join(figures_dir, "confusion.png"), y, labels)]
    return [p for p in out if p]
