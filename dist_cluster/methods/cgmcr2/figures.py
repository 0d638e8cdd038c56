"""CgMCR²'s figures (PNG): affinity matrices ordered by cluster and by class (paper Fig. 2 / B.2), cluster
sizes, the Hungarian-matched confusion matrix and the learning curves of −R, Rc, L_Ncut, ACC, NMI (Fig. 3,
B.3, B.4) read back from metrics.jsonl."""
from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dist_cluster.eval import contingency, hungarian_match  # noqa: E402


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


def confusion_figure(labels: np.ndarray, y: np.ndarray, path: str) -> str:
    mapping = hungarian_match(labels, y)
    w = contingency(labels, y)
    matched = np.argsort(mapping[mapping >= 0])
    rows = np.flatnonzero(mapping >= 0)[matched]
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(w[rows].T, cmap="viridis")
    ax.set_xlabel("predicted cluster (Hungarian order)")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def learning_curves(metrics_path: str, path: str) -> str | None:
    if not os.path.exists(metrics_path):
        return None
    train, evals = [], []
    with open(metrics_path) as f:
        for line in f:
            rec = json.loads(line)
            (train if rec.get("kind") == "train" else evals if rec.get("kind") == "eval" else []).append(rec)
    if not train:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    steps = [r["step"] for r in train]
    for ax, key, name in zip(axes, ("loss/R", "loss/Rc", "loss/ncut"), ("−R", "Rc", "L_Ncut")):
        pts = [(s, r[key]) for s, r in zip(steps, train) if key in r]
        if pts:
            ax.plot(*zip(*pts))
        ax.set_title(name)
        ax.set_xlabel("step")
    switch = [r["step"] for a, r in zip(train, train[1:]) if a.get("stage") != r.get("stage")]
    for ax in axes[:3]:
        for s in switch:
            ax.axvline(s, color="grey", ls=":")
    for key in ("acc", "nmi"):
        pts = [(r["step"], r[key]) for r in evals if key in r]
        if pts:
            axes[3].plot(*zip(*pts), "o-", label=key.upper())
    axes[3].set_title("evaluation")
    axes[3].set_xlabel("step")
    if axes[3].lines:
        axes[3].legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_all(ev: dict, m, run_dir: str, figures_dir: str) -> list[str]:
    labels, y = ev["labels"].numpy(), ev["y"].numpy()
    labelled = bool((y >= 0).all())     # figures against the classes need labels
    out = [affinity_figure(ev, labels, "ordered by predicted cluster",
                           os.path.join(figures_dir, "affinity_by_cluster.png"), m.figure_points),
           cluster_size_figure(labels, y if labelled else None, m.k, os.path.join(figures_dir, "cluster_sizes.png")),
           learning_curves(os.path.join(run_dir, "metrics.jsonl"), os.path.join(figures_dir, "learning_curves.png"))]
    if labelled:
        out += [affinity_figure(ev, y, "ordered by true class", os.path.join(figures_dir, "affinity_by_class.png"),
                                m.figure_points),
                confusion_figure(labels, y, os.path.join(figures_dir, "confusion.png"))]
    return [p for p in out if p]
