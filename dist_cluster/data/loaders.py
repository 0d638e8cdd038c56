"""Training and evaluation loaders over local shards (map-style, random access by global index).

Training (`ShardLoader`, the engine's Loader protocol): the epoch-seeded global permutation of
`dist_cluster.data.sampling` — every rank yields `N // (batch_size · world_size)` batches, the remainder of
the permutation is dropped each epoch, and `epoch(e, start_batch)` resumes exactly mid-epoch. Workers only
decode; each sample's augmentation is seeded from (seed, epoch, index), so batches do not depend on
`num_workers`. Samples that cannot be read are replaced deterministically and counted in `_skipped`.

Evaluation (`EvalLoader`): rank r takes global indices r, r+W, r+2W, ...; every sample is covered once
across ranks. Ranks whose share is one short repeat their last sample so that every rank runs the same number
of batches (collectives inside a forward, e.g. ZeRO-3, never wait on a rank that finished);
`dist_cluster.eval.gather_in_index_order` drops the repeats.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader

from dist_cluster.data.dataset import RandomAccessDataset, collate
from dist_cluster.data.sampling import EpochPlan


class _EpochView(torch.utils.data.Dataset):
    """Dataset indexed by (epoch, global index) so workers need no shared epoch state."""

    def __init__(self, ds: RandomAccessDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        return self.ds.get(index, epoch)

    def __getitems__(self, keys: list[tuple[int, int]]) -> dict:
        return self.ds.get_batch(keys)


class _PlanSampler(torch.utils.data.Sampler):
    """Batch sampler over an EpochPlan from (epoch, start_batch); set before each pass."""

    def __init__(self, plan: EpochPlan):
        self.plan, self.epoch, self.start = plan, 0, 0

    def __iter__(self):
        for rows in self.plan.batches(self.epoch, self.start):
            yield [(self.epoch, int(i)) for i in rows]

    def __len__(self) -> int:
        return self.plan.batches_per_epoch() - self.start


def _dataloader(ds, batch_sampler, num_workers: int, persistent: bool) -> DataLoader:
    # An own generator: otherwise every new iterator draws its worker base seed from the global torch RNG.
    return DataLoader(_EpochView(ds), batch_sampler=batch_sampler, num_workers=num_workers, collate_fn=collate,
                      persistent_workers=persistent and num_workers > 0, pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(0))


class ShardLoader:
    """Loader protocol over a RandomAccessDataset (images or features)."""

    def __init__(self, dataset: RandomAccessDataset, batch_size: int, *, seed: int, rank: int, world_size: int,
                 num_workers: int = 0, drop_last: bool = True):
        self.dataset = dataset
        self.plan = EpochPlan(len(dataset), batch_size, seed, rank, world_size, drop_last)
        self.global_batch_size = self.plan.global_batch_size
        self._sampler = _PlanSampler(self.plan)
        self._loader = _dataloader(dataset, self._sampler, num_workers, persistent=True)

    def batches_per_epoch(self) -> int:
        return self.plan.batches_per_epoch()

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[dict]:
        self._sampler.epoch, self._sampler.start = epoch, start_batch
        return iter(self._loader)


class EvalLoader:
    """Iterable of evaluation batches for one rank (see module doc); same batch count on every rank."""

    def __init__(self, dataset: RandomAccessDataset, batch_size: int, *, rank: int, world_size: int,
                 num_workers: int = 0):
        self.dataset = dataset
        n = len(dataset)
        share = -(-n // world_size)
        own = list(range(rank, n, world_size)) or [0]
        own += [own[-1]] * (share - len(own))
        self.indices = own
        self.batches = [[(0, i) for i in own[s:s + batch_size]] for s in range(0, share, batch_size)]
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        return iter(_dataloader(self.dataset, self.batches, self.num_workers, persistent=False))
