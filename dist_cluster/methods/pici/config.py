"""PICI's method section of the experiment config (SPEC P2-P7). Defaults are the paper's; "reference" options
reproduce the authors' code where SPEC P7 resolves an ambiguity differently."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class PICIConfig:
    target: str = "dist_cluster.methods.pici.method:PICI"
    num_clusters: int = 10                 # M = number of classes

    # model (SPEC P2, P5); the input size is data.image_size, channels data.in_chans
    patch_size: int = 16
    embed_dim: int = 384                   # ViT-Small
    depth: int = 6
    num_heads: int = 12
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    instance_dim: int = 128
    head_hidden: int = 0                   # hidden width of G_I / G_C (0 = embed_dim)
    # sincos (reference, SPEC P7-2) | learned (paper text)
    pos_embed: Literal["sincos", "learned"] = "sincos"
    norm_pix_loss: bool = True             # per-patch normalised reconstruction targets (SPEC P7-11)

    # training (SPEC P3-P5)
    # weak_strong (paper) | two_strong (reference BYOL views)
    views: Literal["weak_strong", "two_strong"] = "weak_strong"
    mask_ratio: float = 0.5
    pretrain_epochs: int = 200             # stage 1: L_PISD; F, D
    train_epochs: int = 800                # stage 2: L_PISD + L_ins + L_clu; F, D, G_I, G_C
    boost_epochs: int = 50                 # stage 3: L_ins + L_clu + L_CLI; F, G_I, G_C
    tau_instance: float = 0.5
    tau_cluster: float = 1.0
    entropy_form: Literal["cc", "paper"] = "cc"               # cc: + (2 log M − H(C)) | paper: − H(C) (same gradient)

    # boosting / cross-level interaction (SPEC P7-6..8)
    pl_mask_ratio: float = 0.0             # mask of the pseudo-label pass (0.5 = reference)
    # l2: k-means on the L2-normalised z | minmax: per-batch MinMax (reference)
    pl_features: Literal["l2", "minmax"] = "l2"
    pl_batch_size: int = 0                 # batch of the pseudo-label / matching passes (0 = data.eval_batch_size)
    # torch: distributed k-means | sklearn: on rank 0 (reference parity)
    kmeans_backend: Literal["torch", "sklearn"] = "torch"
    kmeans_n_init: int = 100               # reference code
    kmeans_max_iter: int = 300
    # epoch: global Hungarian at each boost epoch start | batch (reference)
    match_scope: Literal["epoch", "batch"] = "epoch"
    # nll (Eq. 15) | reference_double_softmax (SPEC P7-7)
    cli_ce: Literal["nll", "reference_double_softmax"] = "nll"

    # evaluation and figures
    # train: transductive, the paper's protocol (SPEC P7-12) | eval
    eval_split: Literal["train", "eval"] = "train"
    nmi_average: Literal["arithmetic", "geometric", "min", "max"] = "arithmetic"
    eval_reference_mask: float = 0.0       # > 0: also log metrics with this test-time mask (diagnostic, SPEC P7-3)
    recon_images: int = 8                  # MAE reconstructions in the figure
    tsne_samples: int = 1000               # points in the t-SNE figure (0 = no t-SNE)
