"""Throughput of the shard stream against torchvision ImageFolder + DataLoader on the same images.

Both read the same PNG files (Fashion-MNIST training images, or scikit-learn's digits upscaled to 28×28 when
Fashion-MNIST is not installed), written once as an ImageFolder tree and as shards of the identical bytes,
decode them, give them 3 channels and apply the same timm ImageNet train transform, with the same batch size
and workers. Time counts from the first batch (worker start-up excluded for both). `--remote`: the shards
are streamed through a throttled pipe and every ImageFolder file is read at the same rate after a 2 ms
request latency, as from a network store. Exactness (quick): resuming an epoch at batch b gives batches
b, b+1, ... of the uninterrupted epoch, bit for bit.
"""
from __future__ import annotations

import os
import sys
import time

import torch

from dist_cluster.bench.registry import Options, Row
from dist_cluster.bench.throttle import parse_rate, read_throttled
from dist_cluster.bench.timer import Measured, paired

LATENCY = 0.002


def _images(n: int):
    import numpy as np
    from PIL import Image
    try:
        from dist_cluster.data.sources import fmnist_source
        src = fmnist_source("train")
        return "Fashion-MNIST", ((Image.fromarray(src.images[i]), int(src.labels[i])) for i in range(n))
    except (FileNotFoundError, OSError):
        from dist_cluster.data.sources import digits_source
        src = digits_source()
        big = [Image.fromarray(np.asarray(im)).resize((28, 28), Image.BILINEAR) for im in src.images]
        return "digits 28×28", ((big[i % len(big)], int(src.labels[i % len(big)])) for i in range(n))


def write_folder(root: str, n: int) -> str:
    mark = os.path.join(root, ".complete")
    if os.path.exists(mark):
        with open(mark) as f:
            name, count = f.read().split("\t")
        if int(count) == n:
            return name
    name, items = _images(n)
    for i, (img, label) in enumerate(items):
        os.makedirs(os.path.join(root, f"{label:02d}"), exist_ok=True)
        img.save(os.path.join(root, f"{label:02d}", f"{i:06d}.png"))
    with open(mark, "w") as f:
        f.write(f"{name}\t{n}")
    return name


def epoch_time(batches, n_batches: int) -> Measured:
    it = iter(batches)
    next(it)
    count, t0 = 0, time.perf_counter()
    for _, b in zip(range(n_batches - 1), it):
        count += len(b["image"] if isinstance(b, dict) else b[0])
    return Measured(time.perf_counter() - t0, count)


def remote_manifest(manifest_path: str, rate: str):
    from dist_cluster.data.manifest import Manifest
    m = Manifest.load(manifest_path)
    raw = m.raw() if callable(getattr(m, "raw", None)) else m.to_json()
    shards = [{**s, "url": f"pipe:{sys.executable} -m dist_cluster.bench.throttle {rate} {os.path.abspath(p)}"}
              for s, p in zip(raw["shards"], m.urls())]
    return Manifest(**{**{k: v for k, v in raw.items() if k in ("kind", "source", "image", "classes")},
                       "shards": shards})


def resume_is_exact(loader, epoch: int, start: int) -> bool:
    full = list(loader.epoch(epoch))
    tail = list(loader.epoch(epoch, start))
    return len(tail) == len(full) - start and all(
        torch.equal(a["image"], b["image"]) and torch.equal(a["index"], b["index"]) for a, b in zip(full[start:], tail))


def run(opts: Options) -> list[Row]:
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from dist_cluster.data import build_train_loader, make_transform
    from dist_cluster.data.config import DataConfig
    from dist_cluster.data.sources import ImageFolderSource
    from dist_cluster.data.writer import write_shards
    torch.set_num_threads(1)
    n, size, bs, workers = (256, 64, 32, 2) if opts.quick else (4000, 224, 64, 2)
    root = os.path.join("data", f"bench_images_{n}")
    folder, shards = os.path.join(root, "folder"), os.path.join(root, "shards")
    name = write_folder(folder, n)
    manifest = write_shards(ImageFolderSource(folder), shards, "train", samples_per_shard=max(64, n // 8),
                            workers=1, progress=False)
    tf = make_transform("train", size, 3)
    cfg = DataConfig(batch_size=bs, num_workers=workers, in_chans=3, shuffle_buffer=256)
    src = remote_manifest(manifest, opts.rate) if opts.remote else manifest
    ours = build_train_loader(cfg, src, seed=0, rank=0, world_size=1, transform=tf)
    n_batches = ours.batches_per_epoch()
    loader = None
    if opts.remote:
        rate = parse_rate(opts.rate)
        loader = lambda p: _pil(read_throttled(p, rate, LATENCY))  # noqa: E731
    ref_ds = ImageFolder(folder, transform=tf, **({"loader": loader} if loader else {}))
    ref = DataLoader(ref_ds, batch_size=bs, shuffle=True, drop_last=True, num_workers=workers,
                     persistent_workers=workers > 0)
    epochs = iter(range(10 ** 6))
    med, _ = paired({"ours": lambda: epoch_time(ours.epoch(next(epochs)), n_batches),
                     "ref": lambda: epoch_time(iter(ref), n_batches)}, opts.repeats, pause=opts.pause)
    how = f"through a pipe at {opts.rate} bytes/s" if opts.remote else "local disk"
    imgs = (n_batches - 1) * bs
    exact = resume_is_exact(ours, 0, max(1, n_batches // 2)) if opts.quick and not opts.remote else None
    return [Row("data", f"{imgs} {name} PNGs/epoch → {size}px timm train, batch {bs}, {workers} workers, {how}",
                f"1×{workers}w", imgs / med["ours"], "ImageFolder + DataLoader", imgs / med["ref"],
                "" if opts.quick else "≥1.1", exact, "resume mid-epoch exact" if exact else "", "img/s")]


def _pil(data: bytes):
    import io

    from PIL import Image
    return Image.open(io.BytesIO(data)).convert("RGB")
