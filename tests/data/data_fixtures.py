"""Small synthetic shard sets for the data-layer tests (module-level helpers so spawned ranks can import them)."""
from __future__ import annotations

import numpy as np

from dist_cluster.data.config import DataConfig
from dist_cluster.data.sources import ArraySource
from dist_cluster.data.writer import write_shards

N, SPP, SIZE = 103, 15, 8  # 7 shards: six of 15 and one of 13


def synthetic_images(n: int = N, size: int = SIZE) -> np.ndarray:
    """Grey images whose top-left pixel encodes the sample index, so decoded content can be checked."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n) % 256
    return images


def write_synthetic(out_dir: str, n: int = N, spp: int = SPP, workers: int = 1) -> str:
    src = ArraySource(synthetic_images(n), np.arange(n) % 10, [str(c) for c in range(10)], {"name": "synthetic"})
    return write_shards(src, out_dir, "train", samples_per_shard=spp, workers=workers, progress=False)


def cfg(batch_size: int = 4, num_workers: int = 0, **kw) -> DataConfig:
    return DataConfig(name="synthetic", batch_size=batch_size, eval_batch_size=batch_size, num_workers=num_workers,
                      in_chans=1, **kw)


def index_of_pixels(images) -> list[int]:
    """Recover sample indices from untransformed float images (top-left pixel)."""
    return [int(round(float(v) * 255)) for v in images[:, 0, 0, 0]]


def epoch_indices(loader, epoch: int, start_batch: int = 0) -> list[list[int]]:
    return [b["index"].tolist() for b in loader.epoch(epoch, start_batch)]
