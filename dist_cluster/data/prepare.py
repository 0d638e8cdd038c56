"""`prepare(cfg)`: make sure the shards of `cfg.name` exist under `cfg.root` and return their manifests.

Data sets (each writes `<root>/<dir>/{train,eval}.json` + shards the first time it is asked for):
  digits         scikit-learn digits, 1,797 8×8 grey images; train = eval (clustering is transductive)
  digits_pixels  the same 1,797 digits as 64-d raw pixel features (grey levels 0..16)
  fmnist         Fashion-MNIST idx files (data.source or Debian's /usr/share/datasets/fashion-mnist);
                 train 60,000 / eval 10,000
  fmnist_effnet  frozen EfficientNet-Lite0 features of fmnist (1280-d, images resized to data.image_size,
                 112 in the preset, stored in fmnist_effnet_<size> unless 224); data.backbone picks another
                 backbone (dist_cluster.data.features)
  imagefolder, imagenet   an ImageFolder tree at data.source: `train/` + `val/` subfolders become the two
                 splits, a single tree is both; data.train / data.eval may instead point at manifests
Explicit data.train (and data.eval) always win. Several processes may call prepare at once: a file lock
lets the first one write while the others wait, then they all read the finished manifests.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager

from dist_cluster.data.manifest import Manifest

# Sources and the writer are imported inside the builders: this module loads with the config.


@contextmanager
def file_lock(path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _complete(paths: dict[str, str]) -> bool:
    try:
        for p in set(paths.values()):
            Manifest.load(p).check_files()
        return True
    except (OSError, ValueError, KeyError):
        return False


def _spp(cfg, default: int) -> int:
    return cfg.samples_per_shard or default


def _digits(cfg, out: str) -> None:
    from dist_cluster.data.sources import digits_source
    from dist_cluster.data.writer import write_shards
    write_shards(digits_source(), out, "train", samples_per_shard=_spp(cfg, 500), progress=False)


def _digits_pixels(cfg, out: str) -> None:
    import numpy as np
    from sklearn.datasets import load_digits

    from dist_cluster.data.sources import FeatureSource
    from dist_cluster.data.writer import write_shards
    d = load_digits()
    src = FeatureSource(d.data.astype(np.float32), d.target, [str(c) for c in d.target_names],
                        {"name": "digits_pixels"})
    write_shards(src, out, "train", samples_per_shard=_spp(cfg, 500), progress=False)


def _fmnist(cfg, out: str) -> None:
    from dist_cluster.data.sources import fmnist_source
    from dist_cluster.data.writer import write_shards
    for split, idx_split in (("train", "train"), ("eval", "test")):
        write_shards(fmnist_source(idx_split, cfg.source), out, split, samples_per_shard=_spp(cfg, 10_000),
                     workers=min(4, os.cpu_count() or 1), progress=False)


def _fmnist_features(cfg, out: str) -> None:
    from dataclasses import replace

    from dist_cluster.data.features import extract_features
    images = prepare(replace(cfg, name="fmnist", train="", eval=""))
    for split in ("train", "eval"):
        extract_features(images[split], out, split, backbone=cfg.backbone or "efficientnet_lite0",
                         image_size=cfg.image_size or 224, samples_per_shard=_spp(cfg, 2500), batch_size=64,
                         num_workers=cfg.num_workers)


def _imagefolder(cfg, out: str) -> None:
    from dist_cluster.data.sources import ImageFolderSource
    from dist_cluster.data.writer import write_shards
    if not cfg.source:
        raise ValueError(f"data set '{cfg.name}' needs data.source=<ImageFolder root> (or data.train/data.eval "
                         "pointing at manifests)")
    root = cfg.source
    splits = {"train": os.path.join(root, "train"), "eval": os.path.join(root, "val")}
    if not all(os.path.isdir(p) for p in splits.values()):
        splits = {"train": root}
    for split, tree in splits.items():
        write_shards(ImageFolderSource(tree), out, split, samples_per_shard=_spp(cfg, 1250),
                     workers=os.cpu_count() or 1)


BUILDERS = {"digits": _digits, "digits_pixels": _digits_pixels, "fmnist": _fmnist,
            "fmnist_effnet": _fmnist_features, "imagefolder": _imagefolder, "imagenet": _imagefolder}
SHARED_EVAL = {"digits", "digits_pixels"}


def data_dir(cfg) -> str:
    name = cfg.name
    if name == "fmnist_effnet":
        size = cfg.image_size or 224
        name = (f"fmnist_{cfg.backbone.replace(':', '_').replace('/', '_')}" if cfg.backbone
                and cfg.backbone != "efficientnet_lite0" else name) + ("" if size == 224 else f"_{size}")
    return os.path.join(cfg.root, name)


def prepare(cfg) -> dict[str, str]:
    """{"train": manifest, "eval": manifest} for cfg, writing the shards first if they are missing."""
    if cfg.train:
        return {"train": cfg.train, "eval": cfg.eval or cfg.train}
    if cfg.name not in BUILDERS:
        raise ValueError(f"unknown data set '{cfg.name}'; known: {sorted(BUILDERS)} (or set data.train)")
    out = data_dir(cfg)
    paths = {"train": os.path.join(out, "train.json")}
    single_tree = cfg.name in ("imagefolder", "imagenet") and cfg.source and not os.path.isdir(
        os.path.join(cfg.source, "val"))
    paths["eval"] = paths["train"] if cfg.name in SHARED_EVAL or single_tree else os.path.join(out, "eval.json")
    if _complete(paths):
        return paths
    with file_lock(out + ".lock"):
        if not _complete(paths):
            BUILDERS[cfg.name](cfg, out)
    return paths
