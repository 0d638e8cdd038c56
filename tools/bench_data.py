#!/usr/bin/env python
"""Throughput of the shard stream against torchvision ImageFolder + DataLoader on the same images.

Both read the same PNG files (Fashion-MNIST train images written once as an ImageFolder tree and as shards
of the identical bytes), decode, convert grey to RGB and apply the same timm ImageNet train transform
(RandomResizedCrop to --image-size, flip, RandAugment, random erasing), with the same batch size and
workers. Time is measured after the first batch (worker start-up excluded for both); each pipeline runs
--repeats epochs in alternating order and the table gives the median.

  python tools/bench_data.py --images 4000 --workers 2 --image-size 224
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_folder(root: str, n: int) -> None:
    from PIL import Image

    from dist_cluster.data.sources import fmnist_source
    src = fmnist_source("train")
    if os.path.exists(os.path.join(root, ".complete")) and len(os.listdir(root)) > 1:
        with open(os.path.join(root, ".complete")) as f:
            if int(f.read()) == n:
                return
    for i in range(n):
        d = os.path.join(root, f"{int(src.labels[i]):02d}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(src.images[i]).save(os.path.join(d, f"{i:06d}.png"))
    with open(os.path.join(root, ".complete"), "w") as f:
        f.write(str(n))


def timed(batches, n_batches: int) -> tuple[int, float]:
    it = iter(batches)
    first = next(it)
    count = 0
    t0 = time.perf_counter()
    for _, b in zip(range(n_batches - 1), it):
        x = b["image"] if isinstance(b, dict) else b[0]
        count += len(x)
    del first
    return count, time.perf_counter() - t0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default="data/bench_fmnist")
    args = p.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from dist_cluster.data import build_train_loader, make_transform
    from dist_cluster.data.config import DataConfig
    from dist_cluster.data.sources import ImageFolderSource
    from dist_cluster.data.writer import write_shards
    torch.set_num_threads(1)
    folder, shards = os.path.join(args.dir, "folder"), os.path.join(args.dir, "shards")
    write_folder(folder, args.images)
    manifest = write_shards(ImageFolderSource(folder), shards, "train", samples_per_shard=1000,
                            workers=args.workers, progress=False)
    tf = make_transform("train", args.image_size, 3)
    cfg = DataConfig(batch_size=args.batch_size, num_workers=args.workers, in_chans=3)
    ours = build_train_loader(cfg, manifest, seed=0, rank=0, world_size=1, transform=tf)
    n_batches = ours.batches_per_epoch()
    ref = DataLoader(ImageFolder(folder, transform=tf), batch_size=args.batch_size, shuffle=True, drop_last=True,
                     num_workers=args.workers, persistent_workers=args.workers > 0)
    import statistics
    names = ["shards + timm train transform (dist_cluster)", "ImageFolder + DataLoader + same transform"]
    runs = {name: [] for name in names}
    for rep in range(args.repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            n, s = timed(ours.epoch(rep) if name == names[0] else iter(ref), n_batches)
            runs[name].append((n, s))
    print(f"\n{args.images} Fashion-MNIST PNGs -> {args.image_size}px, batch {args.batch_size}, "
          f"{args.workers} workers, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"median of {args.repeats} epochs")
    print("| pipeline | images/epoch timed | seconds | images/s |\n|---|---|---|---|")
    rates = {}
    for name in names:
        n, s = runs[name][0][0], statistics.median(s for _, s in runs[name])
        rates[name] = n / s
        print(f"| {name} | {n} | {s:.2f} | {rates[name]:.0f} |")
    print(f"| ratio (shards / ImageFolder) | | | {rates[names[0]] / rates[names[1]]:.2f} |")


if __name__ == "__main__":
    main()
