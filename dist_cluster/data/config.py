"""Data section of the experiment config."""
from __future__ import annotations

from dataclasses import dataclass, field

# Fields marked SAMPLES decide which samples a split holds and how a deterministic view of them looks; caches
# of per-sample results (UNIC's mining file) key on exactly these.
SAMPLES = {"samples": True}


def samples(default):
    return field(default=default, metadata=SAMPLES)


@dataclass
class DataConfig:
    name: str = samples("digits")           # data set name (presets: dist_cluster.data.presets)
    root: str = "data"             # where shards live / are written
    train: str = samples("")                # manifest .json or shard pattern of the training split
    eval: str = ""                 # manifest .json or shard pattern of the evaluation split
    batch_size: int = 128          # per-rank micro-batch
    eval_batch_size: int = 256
    num_workers: int = 0
    image_size: int = samples(0)            # resize to this (0 = native)
    in_chans: int = samples(3)              # grey images are replicated to this many channels
    # --- where the shards come from (dist_cluster.data.prepare) ---
    # imagefolder/imagenet: ImageFolder root (train/ + val/ or one tree); fmnist: idx dir
    source: str = samples("")
    # feature sets: the frozen backbone the features come from (see data.features)
    backbone: str = samples("")
    samples_per_shard: int = 0     # 0 = the data set's default
    # --- what the loaders use ---
    train_samples: int = samples(0)         # use only the first N training samples in manifest order (0 = all)
    eval_samples: int = 0          # same for the evaluation split
    num_samples: int = 0           # total samples behind a bare streaming shard pattern (no manifest)
    shuffle_buffer: int = 1000     # streaming (pipe:/URL) shards: sample shuffle buffer per rank
    # --- transforms (dist_cluster.data.transforms; timm create_transform under the hood) ---
    mean: tuple[float, ...] = samples(())   # () = ImageNet mean for 3 channels, 0.5 otherwise
    std: tuple[float, ...] = samples(())
    crop_pct: float = samples(0.875)        # eval centre-crop fraction
    interpolation: str = samples("bicubic")
    auto_augment: str = "rand-m9-mstd0.5-inc1"  # timm RandAugment spec for the "train" transform ("" = off)
    re_prob: float = 0.25          # random-erasing probability of the "train" transform
    scale: tuple[float, float] = (0.08, 1.0)    # RandomResizedCrop scale of train / strong views
