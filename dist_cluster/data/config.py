"""Data section of the experiment config."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    name: str = "digits"           # data set name (presets: dist_cluster.data.presets)
    root: str = "data"             # where shards live / are written
    train: str = ""                # manifest .json or shard pattern of the training split
    eval: str = ""                 # manifest .json or shard pattern of the evaluation split
    batch_size: int = 128          # per-rank micro-batch
    eval_batch_size: int = 256
    num_workers: int = 0
    image_size: int = 0            # resize to this (0 = native)
    in_chans: int = 3              # grey images are replicated to this many channels
