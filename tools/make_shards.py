#!/usr/bin/env python
"""Write WebDataset shards + a JSON manifest from a data set.

  python tools/make_shards.py digits --out data/digits
  python tools/make_shards.py fmnist --out data/fmnist [--path /usr/share/datasets/fashion-mnist]
  python tools/make_shards.py imagefolder --path /datasets/imagenet --out data/imagenet --max-bytes 1e9 --workers 16
  python tools/make_shards.py features --path feats.npy [--labels y.npy] --out data/my_feats
      (.npy N×D; or .npz/.pt with 'features' [and 'labels'], other names by --features-key/--labels-key)

fmnist writes train (60k) and eval (10k); imagefolder writes train/ and val/ as train and eval when both
exist, else the whole tree as train. Re-running resumes: finished shards are verified by sha256 and skipped.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sources(args):
    from dist_cluster.data import sources as S
    if args.source == "digits":
        return {"train": S.digits_source()}
    if args.source == "fmnist":
        return {"train": S.fmnist_source("train", args.path), "eval": S.fmnist_source("test", args.path)}
    if args.source == "imagefolder":
        if not args.path:
            sys.exit("imagefolder needs --path <root>")
        tv = {"train": os.path.join(args.path, "train"), "eval": os.path.join(args.path, "val")}
        if all(os.path.isdir(p) for p in tv.values()):
            return {k: S.ImageFolderSource(p) for k, p in tv.items()}
        return {"train": S.ImageFolderSource(args.path)}
    from dist_cluster.cluster.arrays import InputError, encode_labels, read_features
    if not args.path:
        sys.exit("features needs --path <file>: a .npy (N×D), or an .npz/.pt with 'features' [and 'labels']")
    try:
        x, y = read_features(args.path, args.labels or None, args.features_key or None, args.labels_key or None)
        y, names = encode_labels(y, len(x)) if y is not None else (None, [])
    except InputError as e:
        sys.exit(f"error: {e}")
    import numpy as np
    y = np.full(len(x), -1, np.int64) if y is None else y      # −1 = unknown label
    return {args.split: S.FeatureSource(x, y, names, {"name": "features", "file": args.path})}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", choices=["digits", "fmnist", "imagefolder", "features"])
    p.add_argument("--out", required=True, help="output folder for shards and manifests")
    p.add_argument("--path", default="", help="fmnist idx folder, ImageFolder root or features .npy/.npz/.pt")
    p.add_argument("--split", default="train", help="split name for a features file")
    p.add_argument("--labels", default="", help="features: labels file (.npy/.npz/.pt), optional")
    p.add_argument("--features-key", default="", help="features: array name in an .npz/.pt")
    p.add_argument("--labels-key", default="", help="features: labels' array name in an .npz/.pt")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--samples-per-shard", type=int, default=0)
    g.add_argument("--max-bytes", type=float, default=0, help="byte budget per shard (e.g. 1e9)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from dist_cluster.data.writer import write_shards
    spp = args.samples_per_shard or (0 if args.max_bytes else 10_000)
    t0 = time.time()
    for split, src in sources(args).items():
        path = write_shards(src, args.out, split, samples_per_shard=spp, max_bytes=int(args.max_bytes),
                            workers=args.workers, progress=not args.no_progress)
        print(f"{split}: {len(src)} samples -> {path}")
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
