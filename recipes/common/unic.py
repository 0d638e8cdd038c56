"""Shared builders of UNIC's recipe configs: the paper's settings (SPEC U5) and the CPU-scale ones (SPEC U8)."""
from __future__ import annotations

from dist_cluster.config import ExperimentConfig
from dist_cluster.data import DataConfig
from dist_cluster.methods.unic.config import UnicConfig

# SPEC U5 per data set: K, τ1, η, τ2 (η = 0 with eta_quantile: CUB's η is not given, U7-10/14)
PAPER = {
    "stl10": dict(num_clusters=10, tau1=10, eta=70, tau2=1000),
    "imagenet50": dict(num_clusters=50, tau1=50, eta=1500, tau2=6300),
    "imagenet100": dict(num_clusters=100, tau1=50, eta=1500, tau2=6300),
    "imagenet200": dict(num_clusters=200, tau1=50, eta=1500, tau2=6300),
    "gcd_cifar10": dict(num_clusters=10, tau1=10, eta=70, tau2=10000, old_classes=tuple(range(5))),
    "gcd_imagenet100": dict(num_clusters=100, tau1=10, eta=70, tau2=6300, old_classes=tuple(range(50))),
    "gcd_cub200": dict(num_clusters=200, tau1=10, eta=0, eta_quantile=0.6, tau2=1000,
                       old_classes=tuple(range(100))),
}


def paper_config(dataset: str, batch_size: int = 128, dino_weights: str = "") -> ExperimentConfig:
    """DINO ViT-B/16, last block + final norm + MLP head (768→2048→K), Adam 1e-4 cosine over 100 epochs,
    SCAN's augmentations, 224×224 (SPEC U2, U5, U7-11/12). Data: an ImageFolder tree (`data.source=`) or
    prepared manifests (`data.train=`, `data.eval=`); weights: `method.pretrained_path=` (never downloaded).
    data.batch_size is per process: the paper's batch of 128 on 8 processes is data.batch_size=16 (the entropy
    term sees the global batch either way)."""
    settings = dict(PAPER[dataset])
    mode = "gcd" if dataset.startswith("gcd_") else "cluster"
    method = UnicConfig(mode=mode, input="images", epochs=100, backbone="vit_base_patch16_224.dino",
                        pretrained_path=dino_weights, train_blocks=1, train_final_norm=True, head="mlp",
                        head_hidden=2048, head_act="gelu", lambda_pos=1.0, lambda_neg=1.0, lambda_ent=3.0,
                        mine_batch_size=256, **settings)
    cfg = ExperimentConfig(name=f"unic_{dataset}", method=method, seed=0)
    cfg.data = DataConfig(name="imagenet", image_size=224, batch_size=batch_size, eval_batch_size=256,
                          num_workers=8, samples_per_shard=1250, crop_pct=0.875, interpolation="bicubic",
                          scale=(0.2, 1.0))
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "adam", 1e-4, 0.0
    cfg.sched.name, cfg.sched.warmup_epochs, cfg.sched.min_lr = "cosine", 0.0, 0.0
    cfg.engine.log_every = 50
    return cfg


def fmnist_config(mode: str = "cluster") -> ExperimentConfig:
    """Head-only UNIC on frozen EfficientNet-Lite0 features of Fashion-MNIST (runs on a CPU)."""
    method = UnicConfig(mode=mode, input="features", num_clusters=10, epochs=30, tau1=10, tau2=6000,
                        eta=0, eta_quantile=0.6, head="mlp", head_hidden=512, head_act="gelu",
                        lambda_pos=1.0, lambda_neg=1.0, lambda_ent=3.0, old_classes=(0, 1, 2, 3, 4),
                        labelled_fraction=0.5)
    cfg = ExperimentConfig(name="unic_fmnist" if mode == "cluster" else "unic_gcd_fmnist", method=method, seed=0)
    cfg.data = DataConfig(name="fmnist_effnet", backbone="efficientnet_lite0", image_size=112, batch_size=128,
                          eval_batch_size=1024)
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "adam", 1e-3, 0.0
    cfg.sched.name, cfg.sched.min_lr = "cosine", 0.0
    cfg.engine.log_every = 100
    return cfg
