"""DATA → a feature or image manifest, written once and cached by content hash.

DATA is a feature array (`.npy`/`.npz`/`.pt`, see `arrays`), a folder of images (class sub-folders optional:
without them every image is unlabelled) or an existing manifest `.json`. Shards land in
`<root>/user/<name>-<hash>/train.json`; the hash covers the array bytes and labels (arrays) or the file
names, sizes and modification times (folders), so the same input is never sharded twice. Several processes
may ask at once (torchrun): a file lock lets the first write while the others wait.

`<root>` is the user's data cache (`cache_dir`): `--cache-dir DIR` (alias `--data-root`), else
$DIST_CLUSTER_CACHE, else $XDG_CACHE_HOME/dist_cluster, else ~/.cache/dist_cluster; never the working
directory unless the user names it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from dist_cluster.cluster.arrays import InputError, encode_labels, read_features
from dist_cluster.data.sources import ImageFolderSource

ARRAY_EXTS = (".npy", ".npz", ".pt", ".pth")
CACHE_ENV = "DIST_CLUSTER_CACHE"


def cache_dir(option: str | None = None) -> str:
    """The data cache, absolute (see the module doc for the order in which it is chosen)."""
    path = option or os.environ.get(CACHE_ENV)
    if not path:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        # the XDG spec ignores a relative value: it would put the cache wherever the user stands
        base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "dist_cluster")
    return os.path.abspath(os.path.expanduser(path))


@dataclass
class UserData:
    manifest: str          # train split (also evaluated: clustering is transductive)
    name: str              # what the result table calls the data
    kind: str              # feature | image
    n: int
    labelled: bool
    feature_dim: int = 0
    image_size: tuple[int, int] = (0, 0)
    # images that did not decode when their features were extracted ({"index", "file", "reason"}): not in `n`,
    # not clustered, no row in clusters.csv
    skipped: list = field(default_factory=list)

    @property
    def total(self) -> int:
        """Samples in the input, skipped ones included (global indices run over 0..total-1)."""
        return self.n + len(self.skipped)


def skip_summary(data: UserData, index) -> dict:
    """summary.json's record of the input samples with no row in clusters.csv (`index`: the rows'
    global indices): `data_skipped`, their number, and `skipped`, those the data layer named."""
    return {"data_skipped": int(data.total - len(np.unique(np.asarray(index)))), "skipped": data.skipped}


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()[:16]


def _write_once(out: str, write) -> str:
    from dist_cluster.data.prepare import _complete, file_lock
    path = os.path.join(out, "train.json")
    if not _complete({"train": path}):
        with file_lock(out + ".lock"):
            if not _complete({"train": path}):
                write(out)
    return path


def array_manifest(x: np.ndarray, y: np.ndarray | None, root: str, name: str, info: dict | None = None) -> str:
    """Feature shards of X (and labels y, or −1 = unknown) under root; returns the manifest path."""
    from dist_cluster.cluster.arrays import check_features
    from dist_cluster.data.sources import FeatureSource
    from dist_cluster.data.writer import write_shards
    x = check_features(x, name)
    codes, names = encode_labels(y, len(x)) if y is not None else (np.full(len(x), -1, np.int64), [])
    key = _digest(str(x.shape).encode(), x.tobytes(), codes.tobytes(), "\0".join(names).encode())
    src = FeatureSource(x, codes, names, {"name": name, **(info or {})})
    out = os.path.join(root, "user", f"{_safe(name)}-{key}")
    return _write_once(out, lambda d: write_shards(src, d, "train", samples_per_shard=10_000, progress=False))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40] or "data"


class FlatImageSource(ImageFolderSource):
    """Image files directly in a folder (no class sub-folders): unlabelled (−1), in sorted name order."""

    def __init__(self, root: str):
        from torchvision.datasets.folder import IMG_EXTENSIONS
        files = sorted(f for f in os.listdir(root) if f.lower().endswith(IMG_EXTENSIONS))
        self.items = [(os.path.join(root, f), -1) for f in files]
        self.class_names, self.info = [], {"name": "images", "root": os.path.abspath(root)}


def _image_source(root: str):
    subdirs = [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
    src = ImageFolderSource(root) if subdirs else FlatImageSource(root)
    if len(src) == 0:
        raise InputError(f"{root}: no image files found (looked for .png/.jpg/... "
                         f"{'in its sub-folders' if subdirs else 'in the folder'})")
    return src


def folder_manifest(root: str, data_root: str) -> str:
    from dist_cluster.data.writer import write_shards
    src = _image_source(root)
    stamp = "\n".join(f"{p}:{os.path.getsize(p)}:{os.path.getmtime(p)}:{c}" for p, c in src.items)
    out = os.path.join(data_root, "user", f"{_safe(os.path.basename(os.path.abspath(root)))}-{_digest(stamp.encode())}")
    return _write_once(out, lambda d: write_shards(src, d, "train", samples_per_shard=1250, progress=False))


def _describe(path: str, name: str) -> UserData:
    from dist_cluster.data import Manifest
    from dist_cluster.data.dataset import open_manifest
    m = Manifest.load(path)
    labelled = bool(m.class_names)
    size = (0, 0)
    if m.kind == "image":
        size = tuple(m.image.get("size") or _probe_size(open_manifest(path)))
    skipped = list(m.source.get("skipped", []))
    return UserData(path, name, m.kind, m.total - len(skipped), labelled, int(m.feature_dim or 0), size, skipped)


def _probe_size(m) -> tuple[int, int]:
    """Image size of the first sample (folders of files do not record one)."""
    from dist_cluster.data.dataset import RandomAccessDataset
    img = RandomAccessDataset(m, None)[0]["image"]
    return (img.height, img.width) if hasattr(img, "height") else tuple(img.shape[-2:])


def resolve_data(data: str, root: str | None = None, labels: str | None = None, features_key: str | None = None,
                 labels_key: str | None = None) -> UserData:
    """Shard DATA if needed (once, under `cache_dir(root)`) and describe it."""
    root = cache_dir(root)
    stem = os.path.splitext(os.path.basename(os.path.abspath(data)))[0]
    if os.path.isdir(data):
        if labels or features_key or labels_key:
            raise InputError(f"{data} is a folder of images: labels come from its class sub-folders, not "
                             "--labels / --features-key / --labels-key")
        return _describe(folder_manifest(data, root), stem)
    if data.endswith(".json"):
        if not os.path.exists(data):
            raise InputError(f"{data}: no such manifest")
        return _describe(data, stem)
    if not data.endswith(ARRAY_EXTS):
        raise InputError(f"{data}: expected a .npy/.npz/.pt array, a folder of images or a manifest .json")
    x, y = read_features(data, labels, features_key, labels_key)
    return _describe(array_manifest(x, y, root, stem, {"file": os.path.abspath(data)}), stem)


def image_features(data: UserData, root: str | None = None, backbone: str = "efficientnet_lite0",
                   image_size: int = 112) -> UserData:
    """Frozen-backbone features of an image manifest (for the methods that cluster feature vectors), written
    next to it (`root` is not used: kept for callers that pass the cache)."""
    from dist_cluster.data.features import extract_features
    out = os.path.join(os.path.dirname(data.manifest), f"features_{_safe(backbone)}_{image_size}")
    path = _write_once(out, lambda d: extract_features(data.manifest, d, "train", backbone=backbone,
                                                       image_size=image_size, rank=0, world_size=1))
    return _describe(path, data.name)
