"""FEC's ImageNet-1K protocol (paper + reference training script), shared by fec_small/base/large."""
from __future__ import annotations

import torch

from dist_cluster.config import CheckpointConfig, EngineConfig, ExperimentConfig, OptimConfig, SchedConfig
from dist_cluster.data import DataConfig
from dist_cluster.methods.fec.config import FecClassificationConfig


def imagenet_protocol(model: str, drop_path: float = 0.1) -> ExperimentConfig:
    """Paper + reference script: AdamW lr 1e-3 for a global batch of 1024 (8 GPUs × 128 here; scale optim.lr
    with the batch), wd 0.05, cosine over 300 epochs + 10 cooldown, 5 warm-up epochs from 1e-6, min lr 1e-6,
    RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, Mixup 0.8 / CutMix 1.0, smoothing 0.1, EMA 0.9998,
    AMP (bf16) on GPU, seed 42; test: 224 centre crop at crop_pct 0.9, bicubic.

    ImageNet-1K comes from shards: data.train=/path/train.json data.eval=/path/val.json, or data.source=/path
    to an ImageFolder tree (train/ and val/) that is sharded on the first run.
    """
    data = DataConfig(name="imagenet", source="/datasets/imagenet", image_size=224, in_chans=3, batch_size=128,
                      eval_batch_size=250, num_workers=8, crop_pct=0.9, interpolation="bicubic",
                      auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, scale=(0.08, 1.0))
    return ExperimentConfig(
        name=model, seed=42, data=data,
        method=FecClassificationConfig(model=model, num_classes=1000, drop_path=drop_path),
        optim=OptimConfig(name="adamw", lr=1e-3, weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8),
        sched=SchedConfig(name="cosine", warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-6, cooldown_epochs=10),
        engine=EngineConfig(precision="bf16" if torch.cuda.is_available() else "fp32", zero_stage=0,
                            log_every=50, eval_every=1),
        ckpt=CheckpointConfig(every_steps=2000, keep_last=2))
