"""Map-style access to a sharded split by global sample index, with per-sample seeded transforms.

A sample that cannot be read or decoded is replaced by the next readable one in manifest order (a
deterministic choice, so every rank still fills its batch and nothing waits on a missing sample); the
replacement is flagged `_skipped = 1` and warned about once per process.
"""
from __future__ import annotations

import io
import logging
import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from webdataset.autodecode import IMAGE_EXTENSIONS

from dist_cluster.data import skips
from dist_cluster.data.batching import pil_to_float, transform_batch
from dist_cluster.data.manifest import Manifest
from dist_cluster.data.sampling import mix_seed, seeded_rng
from dist_cluster.data.tarindex import CorruptSample, ShardIndex, ShardReader
from dist_cluster.errors import DataError

log = logging.getLogger("dist_cluster.data")
MAX_SUBSTITUTES = 10_000


def open_manifest(manifest: str | Manifest) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else Manifest.load(manifest)


class RandomAccessDataset:
    """`ds[i]` → {"image" | "views" | "feature", "label", "index", "_skipped"} for global index i.

    `transform` maps a PIL image to a tensor (→ "image") or to a list of tensors (→ "views"); without one,
    images come as float tensors in [0, 1]. Grey images are given `in_chans` channels when decoded. Random
    transforms are seeded from (seed, epoch, index): set `ds.epoch` or call `ds.get(i, epoch)`.
    """

    def __init__(self, manifest: str | Manifest, transform=None, *, seed: int = 0, in_chans: int = 3,
                 limit: int = 0):
        self.manifest = open_manifest(manifest)
        if not self.manifest.is_local():
            raise ValueError(f"{self.manifest.path}: random access needs local shards; remote shards are read "
                             "by the streaming loader")
        self.manifest.check_files()
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.n = min(limit, self.manifest.total) if limit > 0 else self.manifest.total
        self.reader = ShardReader([p for p in self.manifest.urls()])
        self.mode = "L" if in_chans == 1 else "RGB"
        self._npy: dict = {}
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return self.get(int(index), self.epoch)

    def raw(self, index: int) -> dict:
        """Decoded sample (PIL image or numpy feature, label) or CorruptSample."""
        k, j = self.manifest.locate(index)
        sample = self.reader.read(k, j)
        src = sample_source(sample, self.manifest)
        where = f"sample {j} of {self.manifest.url(k)}"
        try:
            out = self._decode(sample, index)
        except Exception as e:  # undecodable bytes of any kind
            raise CorruptSample(f"{src} does not decode ({e!r}); stored as {where}" if src
                                else f"{self.manifest.url(k)}: sample {j} does not decode ({e!r})") from e
        if out is None:
            if "skipped" in sample:   # left out when the features were extracted
                raise CorruptSample(f"no feature in {where}: {sample['skipped'].decode()}")
            raise CorruptSample(f"{self.manifest.url(k)}: sample {j} has no image or npy member")
        return out

    def _decode(self, sample: dict, index: int) -> dict | None:
        out = decode_sample(sample, self.mode, self._npy)
        if out is not None:
            out["index"] = index
        return out

    def readable(self, index: int) -> dict:
        """Decoded sample `index`, or the next readable one (flagged `_skipped`) when it is corrupt."""
        for attempt in range(min(MAX_SUBSTITUTES, self.n)):
            j = (index + attempt) % self.n
            try:
                out = self.raw(j)
                break
            except CorruptSample as e:
                if j not in self._warned:   # counted through the batch's _skipped flag
                    self._warned.add(j)
                    skips.warn(f"skipping corrupt sample {j}: {e}")
        else:
            raise RuntimeError(f"no readable sample within {MAX_SUBSTITUTES} of index {index} in "
                               f"{self.manifest.path}")
        out["_skipped"] = int(attempt > 0)
        return out

    def get(self, index: int, epoch: int = 0) -> dict:
        out = self.readable(index)
        if "image" in out:
            img = out.pop("image")
            with seeded_rng(mix_seed(self.seed, epoch, index)):
                x = self.transform(img) if self.transform is not None else pil_to_float(img)
            out["views" if isinstance(x, (list, tuple)) else "image"] = list(x) if isinstance(x, tuple) else x
        return out

    def get_batch(self, keys: Sequence[tuple[int, int]]) -> dict:
        """Samples (epoch, index) collated, the images transformed into the batch (dist_cluster.data.batching);
        equal to collating `get(index, epoch)` of each."""
        samples = [self.readable(index) for _, index in keys]
        images = [s.pop("image") for s in samples if "image" in s]
        if not images:
            return collate(samples)
        if len(images) != len(samples):
            raise ValueError(f"{self.manifest.path}: a batch mixes image and feature samples")
        x = transform_batch(images, [mix_seed(self.seed, e, i) for e, i in keys], self.transform)
        batch = collate(samples)
        batch["views" if isinstance(x, list) else "image"] = x
        return batch


def sample_source(sample: dict, manifest: Manifest | None = None) -> str:
    """The file a raw sample was written from (image folders record it, relative to the manifest's
    `source.root`), or "" when the shard does not say."""
    rel = sample.get("path")
    if not rel:
        return ""
    rel = rel.decode() if isinstance(rel, bytes) else str(rel)
    root = (manifest.source.get("root") or "") if manifest is not None else ""
    return os.path.join(root, rel)


def decode_sample(sample: dict, mode: str, npy_cache: dict) -> dict | None:
    """{"label", "image" | "feature"} of a raw sample: the image opened and converted by PIL (to `mode`, as
    torchvision's ImageFolder does: one conversion) or the npy feature; other members are not decoded. None
    without either."""
    out = {"label": int(sample.get("cls", b"-1"))}
    if "npy" in sample:
        out["feature"] = torch.from_numpy(np.array(_load_npy(sample["npy"], npy_cache), dtype=np.float32))
        return out
    key = next((key for key in sample if key.lower() in IMAGE_EXTENSIONS), None)
    if key is None:
        return None
    out["image"] = Image.open(io.BytesIO(sample[key])).convert(mode)
    return out


def collate(samples: list[dict]) -> dict:
    """Stack a list of samples; `_skipped` becomes the batch's 0-dim count. A batch made whole already (a dict,
    from `RandomAccessDataset.get_batch`) passes through."""
    from torch.utils.data import default_collate
    if isinstance(samples, dict):
        return samples
    skipped = sum(s.pop("_skipped", 0) for s in samples)
    batch = default_collate(samples)
    batch["_skipped"] = torch.tensor(skipped, dtype=torch.long)
    return batch


def _load_npy(data: bytes, seen: dict) -> np.ndarray:
    """np.load, skipping the header parse when it repeats the previous sample's (same dtype and shape)."""
    if "header" in seen and data[:len(seen["header"])] == seen["header"]:
        return np.frombuffer(data, seen["dtype"], offset=len(seen["header"])).reshape(seen["shape"])
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    if arr.flags.c_contiguous and len(data) > arr.nbytes:
        seen.update(header=data[:len(data) - arr.nbytes], dtype=arr.dtype, shape=arr.shape)
    return arr


def load_feature_arrays(manifest: str | Manifest, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor,
                                                                         torch.Tensor]:
    """A feature split in memory: (features float32 N×D, labels long N, index long N) in manifest order.

    Unreadable samples, and those whose image did not decode when the features were extracted (no `npy`, a
    `skipped` member saying why), are left out and counted (dist_cluster.data.skips; their global indices are
    then absent from `index`); a non-finite value is an error naming the shard and the sample.
    """
    m = open_manifest(manifest)
    m.check_files()
    n = min(limit, m.total) if limit > 0 else m.total
    feats, labels, index = [], [], []
    for k, url in enumerate(m.urls()):
        base = m.offsets[k]
        if base >= n:
            break
        idx, npy = ShardIndex(url), {}
        with open(url, "rb") as f:
            data = io.BytesIO(f.read())  # one read per shard; members are then sliced in memory
        for j in range(min(int(m.shards[k]["samples"]), n - base)):
            raw = None
            try:
                raw = idx.read(j, data)
                row = _load_npy(raw["npy"], npy)
            except (CorruptSample, KeyError, ValueError, OSError) as e:
                if raw is not None and "skipped" in raw:   # its image did not decode at extraction
                    skips.record(f"skipping sample {base + j}, which has no feature: {raw['skipped'].decode()}")
                else:
                    skips.record(f"skipping corrupt feature sample {j} of {url}: {e!r}")
                continue
            if not np.isfinite(row).all():
                raise DataError(f"{url}: feature sample {j} (global index {base + j}) holds NaN or Inf; "
                                 "rewrite the shards from finite features")
            feats.append(row)
            labels.append(int(raw.get("cls", b"-1")))
            index.append(base + j)
    if not feats:
        raise ValueError(f"{m.path}: no readable feature samples in {len(m.shards)} shard(s)")
    return (torch.from_numpy(np.stack(feats).astype(np.float32)), torch.tensor(labels, dtype=torch.long),
            torch.tensor(index, dtype=torch.long))
