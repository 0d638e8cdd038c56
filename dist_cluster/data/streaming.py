"""Streaming loader for shards that cannot be read at random (`pipe:` commands, http, object stores).

Per epoch, the shard list is shuffled with (seed, epoch) and dealt round-robin to ranks. Each rank reads its
shards in that order, cycling through them until it has `batches_per_epoch · batch_size` samples, through a
shuffle buffer seeded by (seed, epoch, rank); `batches_per_epoch = N // (batch_size · world_size)` with N from
the manifest (or data.num_samples for a bare pattern). This is webdataset's `with_epoch` semantics: every
rank yields the same number of batches, but with uneven shards a sample can be seen twice or not at all in an
epoch. Resuming at `start_batch` re-reads and skips (without decoding) the first start_batch · batch_size
samples of the rank's stream, so it continues exactly. Another world size deals the shards differently: it
continues from the same number of batches, not the same samples.

Workers: each worker reads the whole rank stream but decodes only the batches b with b ≡ worker (mod
workers), which the DataLoader returns in order; batches therefore do not depend on the worker count, at the
price of reading the (cheap) tar bytes once per worker. Augmentations are seeded from (seed, epoch, index).
Damaged shards end early with a warning (the samples the manifest promised but that never came are counted
in `_skipped`); undecodable samples are replaced by another sample of the same batch and counted.
"""
from __future__ import annotations

import logging
import random
import tarfile
from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.gopen import gopen
from webdataset.tariterators import group_by_keys, tar_file_iterator

from dist_cluster.data import skips
from dist_cluster.data.batching import transform_batch
from dist_cluster.data.dataset import collate, decode_sample, sample_source
from dist_cluster.data.manifest import Manifest
from dist_cluster.data.sampling import mix_seed

log = logging.getLogger("dist_cluster.data")


def read_shard(url: str) -> Iterator[dict]:
    """Raw samples of one shard; stops (with a warning) where the tar is damaged."""
    try:
        stream = gopen(url)
    except Exception as e:
        log.warning("cannot open shard %s: %r", url, e)
        return
    try:
        files = ({**f, "__url__": url} for f in tar_file_iterator(stream))
        yield from group_by_keys(files)
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        log.warning("shard %s is damaged (%r); the rest of it is skipped", url, e)
    finally:
        stream.close()


class _RankStream(IterableDataset):
    def __init__(self, manifest: Manifest, batch_size: int, batches: int, *, seed: int, rank: int,
                 world_size: int, transform, in_chans: int, shuffle_buffer: int, epoch: int, start_batch: int):
        self.m, self.batch_size, self.batches = manifest, batch_size, batches
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.transform, self.in_chans = transform, in_chans
        self.shuffle_buffer = max(1, min(shuffle_buffer, manifest.total // world_size))
        self.mode, self._npy = ("L" if in_chans == 1 else "RGB"), {}
        self.epoch, self.start_batch = epoch, start_batch
        self.estimated = bool(manifest.source.get("estimated"))

    def shards(self) -> list[int]:
        order = random.Random(mix_seed(self.seed, self.epoch, 0x5A4D)).sample(range(len(self.m.shards)),
                                                                              len(self.m.shards))
        return order[self.rank::self.world_size] or [order[self.rank % len(order)]]

    def raw_stream(self) -> Iterator[tuple[dict | None, int]]:
        """(sample, deficit) pairs cycling through this rank's shards; deficit = promised but missing."""
        urls, shards = self.m.urls(), self.shards()
        while True:
            total = 0
            for k in shards:
                got = 0
                for s in read_shard(urls[k]):
                    got += 1
                    yield s, 0
                total += got
                missing = 0 if self.estimated else max(0, int(self.m.shards[k]["samples"]) - got)
                if missing:
                    yield None, missing
            if total == 0:
                raise RuntimeError(f"rank {self.rank}: no readable sample in shards {[urls[k] for k in shards]}")

    def shuffled(self) -> Iterator[tuple[dict, int]]:
        rng = random.Random(mix_seed(self.seed, self.epoch, self.rank, 0xB0F))
        buf, pending = [], 0
        for s, deficit in self.raw_stream():
            pending += deficit
            if s is None:
                continue
            if len(buf) < self.shuffle_buffer:
                buf.append(s)
                continue
            i = rng.randrange(len(buf))
            out, buf[i] = buf[i], s
            yield out, pending
            pending = 0

    def decode(self, raw: dict, fallback_index: int) -> dict:
        """label, index, _seed and the untransformed image (or the feature) of a raw sample."""
        out = decode_sample(raw, self.mode, self._npy)
        if out is None:
            raise ValueError("no image or npy member")
        index = int(raw["index"]) if "index" in raw else -1
        out["index"] = index
        out["_seed"] = mix_seed(self.seed, self.epoch, index if index >= 0 else fallback_index)
        return out

    def make_batch(self, raws: list[tuple[dict, int]], b: int) -> dict:
        samples, bad = [], []
        for p, (raw, _) in enumerate(raws):
            try:
                samples.append(self.decode(raw, mix_seed(self.rank, b, p)))
            except Exception as e:  # undecodable sample
                src = sample_source(raw, self.m)
                skips.warn(f"skipping undecodable sample {raw.get('__key__')} of {raw.get('__url__')}"
                           f"{f' ({src})' if src else ''}: {e!r}")
                samples.append(None)
                bad.append(p)
        good = [s for s in samples if s is not None]
        if not good:
            raise RuntimeError(f"rank {self.rank}: every sample of batch {b} is undecodable")
        for p in bad:  # the next decodable sample of the batch, cyclically
            samples[p] = next(samples[(p + q) % len(samples)] for q in range(1, len(samples))
                              if samples[(p + q) % len(samples)] is not None and (p + q) % len(samples) not in bad)
        samples = [{**s, "_skipped": 0} for s in samples]
        seeds = [s.pop("_seed") for s in samples]
        images = [s.pop("image") for s in samples if "image" in s]
        batch = collate(samples)
        if images and len(images) != len(samples):
            raise ValueError(f"rank {self.rank}: batch {b} mixes image and feature samples")
        if images:
            x = transform_batch(images, seeds, self.transform)
            batch["views" if isinstance(x, list) else "image"] = x
        batch["_skipped"] += len(bad) + sum(d for _, d in raws)
        return batch

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        group: list[tuple[dict, int]] = []
        for pos, item in enumerate(self.shuffled()):
            b = pos // self.batch_size
            if b >= self.batches:
                return
            mine = b >= self.start_batch and (b - self.start_batch) % nw == wid
            if mine:
                group.append(item)
                if len(group) == self.batch_size:
                    yield self.make_batch(group, b)
                    group = []


class StreamingLoader:
    """Loader protocol over streamed shards (see module doc)."""

    def __init__(self, manifest: Manifest, batch_size: int, *, seed: int, rank: int, world_size: int,
                 transform=None, in_chans: int = 3, num_workers: int = 0, shuffle_buffer: int = 1000):
        self.m, self.batch_size, self.num_workers = manifest, batch_size, num_workers
        self.kw = dict(seed=seed, rank=rank, world_size=world_size, transform=transform, in_chans=in_chans,
                       shuffle_buffer=shuffle_buffer)
        self.global_batch_size = batch_size * world_size
        if self.batches_per_epoch() == 0:
            raise ValueError(f"{manifest.total} samples make no full global batch of {batch_size} x {world_size}")

    def batches_per_epoch(self) -> int:
        return self.m.total // self.global_batch_size

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[dict]:
        ds = _RankStream(self.m, self.batch_size, self.batches_per_epoch(), epoch=epoch, start_batch=start_batch,
                         **self.kw)
        return iter(DataLoader(ds, batch_size=None, num_workers=self.num_workers,
                               pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(0)))


class StreamingEvalLoader:
    """Evaluation over streamed shards: rank r reads shards r, r+W, ... in order, in the main process.

    Every sample is covered once across ranks; ranks with fewer samples (per the manifest) repeat their last
    sample so every rank runs the same number of batches (gather_in_index_order drops the repeats). With fewer
    shards than ranks, every rank reads every shard and keeps the samples at stream positions p ≡ rank (mod W).
    """

    def __init__(self, manifest: Manifest, batch_size: int, *, rank: int, world_size: int, transform=None,
                 in_chans: int = 3):
        self.m, self.batch_size, self.rank, self.world_size = manifest, batch_size, rank, world_size
        self.interleave = len(manifest.shards) < world_size
        if manifest.total < world_size:
            raise ValueError(f"{manifest.path or 'evaluation shards'}: {manifest.total} samples for {world_size} "
                             "ranks; evaluate on fewer processes")
        if self.interleave:
            self.shards = list(range(len(manifest.shards)))
            counts = [len(range(r, manifest.total, world_size)) for r in range(world_size)]
        else:
            self.shards = list(range(rank, len(manifest.shards), world_size))
            counts = [sum(int(manifest.shards[k]["samples"]) for k in range(r, len(manifest.shards), world_size))
                      for r in range(world_size)]
        self.num_batches = -(-max(counts) // batch_size)
        self.stream = _RankStream(manifest, batch_size, 0, seed=0, rank=rank, world_size=world_size,
                                  transform=transform, in_chans=in_chans, shuffle_buffer=1, epoch=0, start_batch=0)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict]:
        urls, group, last, made = self.m.urls(), [], None, 0
        samples = (s for k in self.shards for s in read_shard(urls[k]))
        if self.interleave:
            samples = (s for p, s in enumerate(samples) if p % self.world_size == self.rank)
        while made < self.num_batches:
            raw = next(samples, None)
            if raw is None and last is None:
                raise RuntimeError(f"no readable evaluation sample in shards {[urls[k] for k in self.shards]}")
            last = raw or last
            group.append((last, 0))
            if len(group) == self.batch_size:
                yield self.stream.make_batch(group, made)
                group, made = [], made + 1
