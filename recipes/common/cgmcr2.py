"""CgMCR²'s paper settings: Table A.3's rows as ExperimentConfigs (the CIFAR, ImageNet and F-MNIST recipes
build on them)."""
from __future__ import annotations

from dist_cluster.config import ExperimentConfig
from dist_cluster.methods.cgmcr2.config import CgMCR2Config

# Table A.3 (lr, wd, d, T₁, T₂, bs, γ, ε, s) with k = classes; γ assumes orth_form="code" (SPEC B3).
TABLE_A3 = {
    "mnist": (1e-3, 1e-3, 128, 20, 30, 2048, 50, 0.5, 20, 10),
    "fmnist": (1e-3, 1e-3, 128, 20, 30, 2048, 50, 0.2, 20, 10),
    "cifar10": (1e-4, 5e-4, 128, 10, 10, 512, 70, 0.5, 10, 10),
    "cifar20": (1e-4, 5e-4, 128, 10, 40, 1500, 80, 0.2, 50, 20),
    "cifar100": (5e-4, 1e-4, 128, 20, 30, 2048, 1400, 0.5, 20, 100),
    "flowers102": (5e-4, 5e-4, 128, 20, 30, 2048, 1200, 0.5, 10, 102),
    "dogs120": (1e-3, 1e-3, 128, 20, 30, 2048, 1100, 0.2, 40, 120),
    "tinyimagenet": (3e-4, 5e-4, 256, 20, 30, 2048, 3000, 0.5, 20, 200),
    "imagenet": (1e-3, 1e-4, 256, 10, 10, 3000, 50000, 0.2, 3, 1000),
}


def paper_settings(dataset: str, **overrides):
    """An ExperimentConfig with Table A.3's row for `dataset` (Adam, paper schedule, CLIP ViT-L/14 768-d)."""
    if dataset not in TABLE_A3:
        raise ValueError(f"no Table A.3 row for '{dataset}'; rows: {sorted(TABLE_A3)}")
    lr, wd, d, t1, t2, bs, gamma, eps, s, k = TABLE_A3[dataset]
    m = CgMCR2Config(in_dim=768, feature_dim=d, k=k, eps=eps, gamma=gamma, s=s, orth_form="code",
                     warmup_epochs=t1, finetune_epochs=t2, global_batch=bs)
    for key, value in overrides.items():
        setattr(m, key, value)
    cfg = ExperimentConfig(name=f"cgmcr2_{dataset}", method=m, seed=0)
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "adam", lr, wd
    cfg.sched.name, cfg.sched.min_lr = "cosine", 0.0
    cfg.data.batch_size = bs
    cfg.data.eval_batch_size = 1024
    cfg.engine.eval_every = 1
    return cfg


def clip_features(dataset: str, every_steps: int) -> ExperimentConfig:
    """Table A.3's row on CLIP ViT-L/14 features sharded under data/<dataset>_clip_vitl14 (train.json, eval.json),
    one checkpoint kept, written every `every_steps` steps instead of every epoch."""
    cfg = paper_settings(dataset)
    name = f"{dataset}_clip_vitl14"
    cfg.data.name, cfg.data.train, cfg.data.eval = name, f"data/{name}/train.json", f"data/{name}/eval.json"
    cfg.ckpt.keep_last, cfg.ckpt.save_at_epoch_end, cfg.ckpt.every_steps = 1, False, every_steps
    return cfg
