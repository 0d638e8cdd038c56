"""PICI's figures (rank 0, no collectives): MAE reconstructions, the cluster/class confusion matrix, a t-SNE
of the instance features coloured by predicted cluster (paper Fig. 4), and NMI/ACC/ARI and the loss terms over
training with the stage boundaries (paper Fig. 3)."""
from __future__ import annotations

import os

import numpy as np
import torch

from dist_cluster.data.transforms import default_mean_std
from dist_cluster.eval.figures import confusion_figure, learning_curves
from dist_cluster.eval.figures import pyplot as _plt


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
    return confusion_figure(path, ev["label"].numpy(), ev["pred"].numpy(), title=f"epoch {ev['epoch']}:")


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
    return learning_curves(os.path.join(run_dir, "metrics.jsonl"), path,
                           {"loss/pisd": "pisd", "loss/ins": "ins", "loss/clu": "clu", "loss/cli": "cli"})


def write_all(method, ctx) -> list[str]:
    d = ctx.figures_dir
    made = [reconstructions(method, ctx, os.path.join(d, "pici_reconstructions.png")),
            confusion(method, os.path.join(d, "pici_confusion.png")),
            tsne(method, os.path.join(d, "pici_tsne.png")),
            curves(ctx.run_dir, os.path.join(d, "pici_curves.png"))]
    return [p for p in made if p]
