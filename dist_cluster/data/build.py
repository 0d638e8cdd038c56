"""Loader builders: a manifest (or shard pattern) and a DataConfig in, a loader out.

Local shards are read at random through a member index (exact global-permutation epochs, mid-epoch resume,
workers that do not change the batches); shards behind `pipe:`/URL schemes are streamed
(`dist_cluster.data.streaming`). Without an explicit transform, image batches use the "plain" transform
(resize to data.image_size or the native size, normalise); `views="two_strong"` etc. build a multi-view one.
"""
from __future__ import annotations

import os

from braceexpand import braceexpand

from dist_cluster.data.dataset import RandomAccessDataset
from dist_cluster.data.loaders import EvalLoader, ShardLoader
from dist_cluster.data.manifest import Manifest, is_remote, local_path
from dist_cluster.data.streaming import StreamingEvalLoader, StreamingLoader
from dist_cluster.data.tarindex import ShardIndex


def resolve_manifest(spec: str | Manifest, num_samples: int = 0) -> Manifest:
    """A manifest path, or a brace pattern of shard files/URLs (local shards are counted; remote ones need
    `num_samples`, spread evenly over the shards as an estimate)."""
    if isinstance(spec, Manifest):
        return spec
    if not spec:
        raise ValueError("no manifest or shard pattern given (data.train / data.eval, or prepare(cfg))")
    if spec.endswith(".json"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"manifest not found: {spec}")
        return Manifest.load(spec)
    urls = list(braceexpand(spec))
    if not any(is_remote(u) for u in urls):
        for u in urls:
            if not os.path.isfile(local_path(u)):
                raise FileNotFoundError(f"shard file missing: {local_path(u)} (from pattern {spec})")
        indices = [ShardIndex(local_path(u)) for u in urls]
        kind = "feature" if "npy" in indices[0].vocab else "image"
        return Manifest(shards=[{"url": u, "samples": len(i)} for u, i in zip(urls, indices)], kind=kind,
                        source={"pattern": spec})
    if num_samples <= 0:
        raise ValueError(f"streaming pattern {spec!r} needs data.num_samples (total samples) or a manifest")
    per, extra = divmod(num_samples, len(urls))
    return Manifest(shards=[{"url": u, "samples": per + (k < extra)} for k, u in enumerate(urls)],
                    source={"pattern": spec, "estimated": True})


def _transform(cfg, m: Manifest, transform, views, default: str):
    if transform is not None or m.kind == "feature":
        return transform
    native = int(m.image.get("size", [0])[0]) if m.image else 0
    if not views and not (cfg.image_size or native):
        return None  # unknown size (a bare pattern): float tensors at the stored size
    from dist_cluster.data.transforms import transform_from_config  # timm loads only for image sets
    return transform_from_config(cfg, views or default, native)


def build_train_loader(cfg, manifest: str | Manifest, *, seed: int, rank: int, world_size: int, transform=None,
                       views: str | None = None):
    """Training loader (Loader protocol: batches_per_epoch(), epoch(epoch, start_batch)) for one rank."""
    m = resolve_manifest(manifest, cfg.num_samples)
    tf = _transform(cfg, m, transform, views, "plain")
    if not m.is_local():
        return StreamingLoader(m, cfg.batch_size, seed=seed, rank=rank, world_size=world_size, transform=tf,
                               in_chans=cfg.in_chans, num_workers=cfg.num_workers, shuffle_buffer=cfg.shuffle_buffer)
    ds = RandomAccessDataset(m, tf, seed=seed, in_chans=cfg.in_chans, limit=cfg.train_samples)
    return ShardLoader(ds, cfg.batch_size, seed=seed, rank=rank, world_size=world_size,
                       num_workers=cfg.num_workers)


def build_eval_loader(cfg, manifest: str | Manifest, *, rank: int, world_size: int, transform=None,
                      views: str | None = None):
    """Evaluation batches for one rank; all ranks together cover every sample once (see loaders.EvalLoader)."""
    m = resolve_manifest(manifest, cfg.num_samples)
    tf = _transform(cfg, m, transform, views, "plain")
    if not m.is_local():
        return StreamingEvalLoader(m, cfg.eval_batch_size, rank=rank, world_size=world_size, transform=tf,
                                   in_chans=cfg.in_chans)
    ds = RandomAccessDataset(m, tf, in_chans=cfg.in_chans, limit=cfg.eval_samples)
    return EvalLoader(ds, cfg.eval_batch_size, rank=rank, world_size=world_size, num_workers=cfg.num_workers)
