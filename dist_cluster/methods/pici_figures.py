"""PICI's figures (rank 0, no collectives): MAE reconstructions, the cluster/class confusion matrix, a t-SNE
of the instance features coloured by predicted cluster (paper Fig. 4), and NMI/ACC/ARI and the loss terms over
training with the stage boundaries (paper Fig. 3)."""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from dist_cluster.data.transforms import default_mean_std
from dist_cluster.eval import contingency, hungarian_match


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _to_rgb(x: torch.Tensor, mean, std) -> np.ndarray:
    """Normalised (C, H, W) → displayable (H, W, 3) in [0, 1]."""
    x = x.float().cpu() * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    x = x.clamp(0, 1)
    x = x.repeat(3, 1, 1) if x.shape[0] == 1 else x[:3]
    return x.permute(1, 2, 0).numpy()


@torch.no_grad()
def reconstructions(method, ctx, path: str) -> str | None:
    m, data = method.cfg.method, method.cfg.data
    k = m.recon_images
    if k <= 0:
        return None
    imgs = next(iter(method.eval_loader))["image"][:k]
    mae = method.net.mae
    was_training = method.training
    method.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(method.cfg.seed)
            x = imgs.to(device=ctx.device, dtype=next(method.net.parameters()).dtype)
            enc, pred = mae(x, m.mask_ratio, decode=True)
    finally:
        method.train(was_training)
    x = x.float()
    recon = mae.pixels(x, pred)
    patch_mask = mae.unpatchify(enc.mask.float().unsqueeze(-1).expand(-1, -1, mae.patch_size ** 2 * mae.in_chans))
    grey = patch_mask[:, :1].cpu().permute(0, 2, 3, 1).numpy()          # (B, H, W, 1), 1 = masked
    rows = {"input": (x, False), "masked input": (x, True), "reconstruction": (recon, False),
            "reconstruction + visible": (x * (1 - patch_mask) + recon * patch_mask, False)}
    mean, std = (tuple(data.mean) or None, tuple(data.std) or None)
    d_mean, d_std = default_mean_std(mae.in_chans)
    mean, std = mean or d_mean, std or d_std
    plt = _plt()
    fig, axes = plt.subplots(len(rows), len(x), figsize=(1.4 * len(x), 1.5 * len(rows)), squeeze=False)
    for r, (title, (batch, hide)) in enumerate(rows.items()):
        for c in range(len(x)):
            ax = axes[r][c]
            rgb = _to_rgb(batch[c], mean, std)
            ax.imshow(rgb * (1 - grey[c]) + 0.5 * grey[c] if hide else rgb)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=7)
    note = "; norm-pix predictions shown with each input patch's mean/std" if mae.norm_pix_loss else ""
    fig.suptitle(f"MAE reconstructions, mask ratio {m.mask_ratio} (epoch {ctx.epoch}){note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def confusion(method, path: str) -> str | None:
    ev = method.last_eval
    if not ev or not bool((ev["label"] >= 0).all()):
        return None
    y, pred = ev["label"].numpy(), ev["pred"].numpy()
    k, n_cls = method.cfg.method.num_clusters, int(y.max()) + 1
    mapping = hungarian_match(pred, y, k, n_cls)
    order = np.argsort(np.where(mapping < 0, n_cls + np.arange(k), mapping), kind="stable")
    w = contingency(pred, y, k, n_cls)[order].T          # rows: classes, columns: clusters by matched class
    plt = _plt()
    fig, ax = plt.subplots(figsize=(0.45 * k + 2, 0.45 * n_cls + 1.5))
    im = ax.imshow(w, cmap="Blues")
    if k <= 20 and n_cls <= 20:
        for i in range(n_cls):
            for j in range(k):
                ax.text(j, i, int(w[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if w[i, j] > w.max() / 2 else "black")
    ax.set_xticks(range(k), [str(c) for c in order], fontsize=7)
    ax.set_yticks(range(n_cls), [str(c) for c in range(n_cls)], fontsize=7)
    ax.set_xlabel("predicted cluster (ordered by matched class)"), ax.set_ylabel("class")
    acc = float(np.trace(w[:, :min(k, n_cls)]) / max(w.sum(), 1)) if k == n_cls else float("nan")
    ax.set_title(f"clusters vs classes, epoch {ev['epoch']} (ACC {acc:.3f})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def tsne(method, path: str) -> str | None:
    ev, n = method.last_eval, method.cfg.method.tsne_samples
    if not ev or n <= 0 or len(ev["z"]) < 10:
        return None
    from sklearn.manifold import TSNE
    g = torch.Generator().manual_seed(0)
    rows = torch.randperm(len(ev["z"]), generator=g)[:n]
    emb = TSNE(2, init="pca", perplexity=min(30.0, len(rows) / 4), random_state=0).fit_transform(
        ev["z"][rows].double().numpy())
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, key, title in ((axes[0], "pred", "predicted cluster (G_C)"), (axes[1], "label", "class")):
        ax.scatter(emb[:, 0], emb[:, 1], c=ev[key][rows].numpy(), cmap="tab20", s=3)
        ax.set_title(f"t-SNE of instance features, colour = {title}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def curves(run_dir: str, path: str) -> str | None:
    log = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(log):
        return None
    with open(log) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    evals = [r for r in recs if r.get("kind") == "eval" and "acc" in r]
    train = [r for r in recs if r.get("kind") == "train"]
    if not evals and not train:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in ("acc", "nmi", "ari"):
        axes[0].plot([r["epoch"] + 1 for r in evals], [r[key] for r in evals], marker="o", ms=3, label=key.upper())
    last_stage = None
    for r in evals:
        if r.get("stage") != last_stage and last_stage is not None:
            axes[0].axvline(r["epoch"] + 0.5, color="grey", ls=":", lw=1)
        last_stage = r.get("stage")
    axes[0].set_xlabel("epoch"), axes[0].set_title("clustering quality (evaluations)", fontsize=9)
    for key in ("loss/pisd", "loss/ins", "loss/clu", "loss/cli"):
        pts = [(r["step"], r[key]) for r in train if key in r]
        if pts:
            axes[1].plot(*zip(*pts), label=key[5:], lw=1)
    axes[1].set_xlabel("optimizer step"), axes[1].set_title("loss terms", fontsize=9)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_all(method, ctx) -> list[str]:
    d = ctx.figures_dir
    made = [reconstructions(method, ctx, os.path.join(d, "pici_reconstructions.png")),
            confusion(method, os.path.join(d, "pici_confusion.png")),
            tsne(method, os.path.join(d, "pici_tsne.png")),
            curves(ctx.run_dir, os.path.join(d, "pici_curves.png"))]
    return [p for p in made if p]
