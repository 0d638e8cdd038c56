"""UNIC's training stream: the anchors' batches plus, for each anchor, its positive and negative neighbour
fetched by global index (in-memory feature rows, or images read from the shards through a random-access
dataset with their own seeded augmentation)."""
from __future__ import annotations

import collections
from typing import Callable, Iterator

import numpy as np
import torch

Pairs = Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray | None]]   # (epoch, anchors) → (pos, neg)


class FeatureRows:
    """Fetch feature rows by global index from the in-memory (N, D) tensor."""

    def __init__(self, features: torch.Tensor, index: torch.Tensor):
        order = torch.argsort(index)
        self.features = features[order]
        if not torch.equal(index[order], torch.arange(len(index))):
            raise ValueError("feature rows must cover global indices 0..N-1 exactly (a corrupt sample was dropped?)")

    def __call__(self, batches: list[tuple[np.ndarray, str]], epoch: int) -> Iterator[dict]:
        for idx, role in batches:
            yield {f"{role}_feature": self.features[torch.from_numpy(idx)]}


class _Fetch(torch.utils.data.Dataset):
    def __init__(self, datasets: dict):
        self.datasets = datasets

    def __len__(self):
        return 1 << 62

    def __getitem__(self, key):
        role, j, epoch = key
        return self.datasets[role].get(int(j), int(epoch))


class ImageRows:
    """Fetch neighbour images by global index, in `num_workers` processes, in order.

    Each role (pos / neg) reads through its own RandomAccessDataset whose seed differs from the anchors',
    so an anchor that is its own positive gets a second, independent augmentation (SPEC U3).
    """

    def __init__(self, datasets: dict, num_workers: int = 0):
        self.datasets, self.num_workers = datasets, num_workers

    def __call__(self, batches, epoch: int) -> Iterator[dict]:
        from dist_cluster.data.dataset import collate

        def requests():
            for idx, role in batches:
                yield [(role, int(j), epoch) for j in idx]

        roles = collections.deque()

        def tracked():
            for req in requests():
                roles.append(req[0][0])
                yield req

        loader = torch.utils.data.DataLoader(_Fetch(self.datasets), batch_sampler=tracked(), collate_fn=collate,
                                             num_workers=self.num_workers,
                                             persistent_workers=False)
        for batch in loader:
            role = roles.popleft()
            yield {f"{role}_image": batch["image"], "_skipped": batch["_skipped"]}


class PairLoader:
    """Loader protocol: anchors from `anchors` (any Loader) + one positive and one negative per anchor."""

    def __init__(self, anchors, pairs: Pairs, fetch):
        self.anchors, self.pairs, self.fetch = anchors, pairs, fetch

    def batches_per_epoch(self) -> int:
        return self.anchors.batches_per_epoch()

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[dict]:
        pending = collections.deque()

        def neighbour_requests():
            for batch in self.anchors.epoch(epoch, start_batch):
                pos, neg = self.pairs(epoch, batch["index"].numpy())
                roles = [("pos", pos)] + ([("neg", neg)] if neg is not None else [])
                pending.append((batch, len(roles)))
                for role, idx in roles:
                    yield np.asarray(idx, dtype=np.int64), role

        fetched = self.fetch(neighbour_requests(), epoch)
        while True:
            try:
                part = next(fetched)
            except StopIteration:
                return
            batch, n_roles = pending.popleft()
            parts = [part] + [next(fetched) for _ in range(n_roles - 1)]
            for p in parts:
                skipped = p.pop("_skipped", None)
                if skipped is not None:
                    batch["_skipped"] = batch.get("_skipped", 0) + skipped
                batch.update(p)
            yield batch
