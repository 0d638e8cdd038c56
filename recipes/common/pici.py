"""PICI's shared recipe parts: SPEC P8's CPU-scale model and the optimizer/schedule every PICI recipe uses."""
from __future__ import annotations

from dist_cluster.config import ExperimentConfig
from dist_cluster.methods.pici.config import PICIConfig


def tiny_pici(num_clusters: int = 10) -> PICIConfig:
    """SPEC P8's CPU-scale model (patch 4; encoder 64-d × 2 × 4 heads; decoder 64-d × 1 × 4 heads; G_I 64→64→32,
    G_C 64→64→M) and its 2 / 6 / 2 epoch schedule."""
    return PICIConfig(num_clusters=num_clusters, patch_size=4, embed_dim=64, depth=2, num_heads=4,
                      decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=4, instance_dim=32, head_hidden=64,
                      pretrain_epochs=2, train_epochs=6, boost_epochs=2, kmeans_n_init=10)


def pici_experiment(name: str, method: PICIConfig, seed: int = 42, lr: float = 1e-4) -> ExperimentConfig:
    """Adam at a constant lr, no weight decay (SPEC P3): the part every PICI recipe shares."""
    cfg = ExperimentConfig(name=name, method=method, seed=seed)
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "adam", lr, 0.0
    cfg.sched.name = "constant"
    return cfg
