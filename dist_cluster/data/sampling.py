"""Which global sample indices each rank gets in each epoch, and per-sample seeds.

Every epoch draws one global permutation of the N samples from (seed, epoch) alone. Global batch b is
perm[b·B·W : (b+1)·B·W]; rank r takes its slice [r·B : (r+1)·B]. Hence:
  - all ranks yield `batches_per_epoch = N // (B·W)` batches; the remainder N mod (B·W) is dropped each
    epoch (a different random remainder every epoch, so no sample is starved), or with drop_last=False the
    last global batch is filled up with the first samples of the permutation;
  - the stream position is just the batch number: resuming at `start_batch` restarts exactly there;
  - the data seen does not depend on workers or resumption; with another world size (or batch size) the
    same global sample order continues from global sample offset start_batch·B·W (see `resume_batch`),
    which is exact when the global batch size B·W is unchanged.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def mix_seed(*parts: int) -> int:
    """A well-spread 63-bit seed from integers (seed, epoch, index, ...): chained splitmix64, ~1 us a part."""
    h = 0x6A09E667F3BCC908
    for p in parts:
        h = _splitmix64(h ^ (int(p) & _M64))
    return h >> 1


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(mix_seed(seed, epoch, 0x5EED))
    return torch.randperm(n, generator=g)


def resume_batch(samples_consumed: int, batch_size: int, world_size: int) -> int:
    """First batch to run after `samples_consumed` global samples of an epoch, at a (new) B and W."""
    return samples_consumed // (batch_size * world_size)


class EpochPlan:
    """Global-permutation batch plan for one rank (pure function of seed, epoch, rank, world size)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world_size: int, drop_last: bool = True):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.global_batch_size = batch_size * world_size
        self._cache: tuple[int, torch.Tensor] | None = None
        if self.batches_per_epoch() == 0:
            raise ValueError(f"{n} samples make no full global batch of {batch_size} x {world_size} ranks; "
                             "lower data.batch_size or use drop_last=False")

    def batches_per_epoch(self) -> int:
        if self.drop_last:
            return self.n // self.global_batch_size
        return -(-self.n // self.global_batch_size)

    def permutation(self, epoch: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != epoch:
            perm = epoch_permutation(self.seed, epoch, self.n)
            need = self.batches_per_epoch() * self.global_batch_size
            if need > self.n:  # drop_last=False: wrap around to fill the last global batch
                perm = torch.cat([perm, perm[: need - self.n]])
            self._cache = (epoch, perm)
        return self._cache[1]

    def batch(self, epoch: int, b: int) -> torch.Tensor:
        start = b * self.global_batch_size + self.rank * self.batch_size
        return self.permutation(epoch)[start:start + self.batch_size]

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator[torch.Tensor]:
        for b in range(start_batch, self.batches_per_epoch()):
            yield self.batch(epoch, b)


@contextmanager
def seeded_rng(seed: int, restore: bool | None = None):
    """Seed python, numpy and torch RNGs for one sample's augmentation (then restore the caller's state).

    Augmentations (timm, torchvision) draw from these global RNGs; seeding them per sample from
    (seed, epoch, index) makes a sample's views independent of worker count and of resumption. Restoring
    keeps the training process's own RNG stream (dropout, masks) untouched when samples are made in it
    (num_workers=0); worker processes skip it (restoring numpy's state costs ~0.2 ms a sample).
    """
    if restore is None:
        from torch.utils.data import get_worker_info
        restore = get_worker_info() is None
    if restore:
        py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed also seeds (lazy) CUDA, 2 ms a call
    try:
        yield
    finally:
        if restore:
            random.setstate(py)
            np.random.set_state(npy)
            torch.set_rng_state(th)


class TensorLoader:
    """Loader protocol over in-memory tensors (frozen features), same epoch-seeded global permutation.

    Batches: {"feature": (B, D), "label": (B,), "index": (B,), "_skipped": 0}. `index` is the global sample
    index (the `index` tensor given, default the row number).
    """

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, rank: int,
                 world_size: int, drop_last: bool = True, index: torch.Tensor | None = None):
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} features but {len(labels)} labels")
        self.features, self.labels = features, labels.long()
        self.index = torch.arange(len(features)) if index is None else index.long()
        self.plan = EpochPlan(len(features), batch_size, seed, rank, world_size, drop_last)
        self.global_batch_size = self.plan.global_batch_size

    def batches_per_epoch(self) -> int:
        return self.plan.batches_per_epoch()

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[dict]:
        for rows in self.plan.batches(epoch, start_batch):
            yield {"feature": self.features[rows], "label": self.labels[rows], "index": self.index[rows],
                   "_skipped": torch.zeros((), dtype=torch.long)}
