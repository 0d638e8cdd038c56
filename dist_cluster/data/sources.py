"""Data sets before sharding: each `Source` has `len`, `sample(i)` (a webdataset sample dict), class names
and manifest metadata. Images are stored losslessly (PNG for arrays, the original file bytes for folders)."""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from dist_cluster.data.writer import encoded_sample_bytes, tar_member_bytes

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]


class Source:
    kind = "image"
    class_names: list[str] = []
    info: dict = {}
    image_info: dict = {}

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, i: int) -> dict:
        raise NotImplementedError

    def sample_bytes(self, i: int) -> int:
        """Bytes the sample takes in a tar (for byte-budget shard planning)."""
        return encoded_sample_bytes(self.sample(i))


class ArraySource(Source):
    """uint8 images N×H×W (grey) or N×H×W×3 plus integer labels, written as PNG."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, class_names: list[str], info: dict):
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(f"expected uint8 N×H×W[×C] images, got {images.dtype} {images.shape}")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.class_names, self.info = class_names, info
        self.image_info = {"size": list(images.shape[1:3]), "mode": "L" if images.ndim == 3 else "RGB"}

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, i: int) -> dict:
        return {"__key__": f"{i:09d}", "png": self.images[i], "cls": int(self.labels[i]), "index": i}


class FeatureSource(Source):
    """Precomputed features N×D (float32) with labels and the global indices of the images they came from."""
    kind = "feature"

    def __init__(self, features: np.ndarray, labels: np.ndarray, class_names: list[str], info: dict,
                 index: np.ndarray | None = None):
        self.features = np.ascontiguousarray(features, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.index = np.arange(len(features)) if index is None else np.asarray(index, dtype=np.int64)
        self.class_names, self.info = class_names, info
        self.feature_dim = int(self.features.shape[1])

    def __len__(self) -> int:
        return len(self.features)

    def sample(self, i: int) -> dict:
        return {"__key__": f"{i:09d}", "npy": self.features[i], "cls": int(self.labels[i]),
                "index": int(self.index[i])}


class ImageFolderSource(Source):
    """A torchvision-style ImageFolder tree (class folders of image files); file bytes are stored as-is, with
    each file's path relative to the root (member `path`; the root is the manifest's `source.root`)."""

    def __init__(self, root: str):
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolder root not found: {root}")
        self.class_names, to_idx = find_classes(root)
        self.items = make_dataset(root, to_idx, extensions=IMG_EXTENSIONS)  # sorted: reproducible order
        self.info = {"name": "imagefolder", "root": os.path.abspath(root)}

    def __len__(self) -> int:
        return len(self.items)

    def _ext(self, i: int) -> str:
        return os.path.splitext(self.items[i][0])[1][1:].lower()

    def _relpath(self, i: int) -> str:
        return os.path.relpath(self.items[i][0], self.info["root"])

    def sample(self, i: int) -> dict:
        path, label = self.items[i]
        with open(path, "rb") as f:
            data = f.read()
        # `path` (relative to the manifest's source root) lets a skip name the file, not a shard position
        return {"__key__": f"{i:09d}", self._ext(i): data, "cls": label, "index": i, "path": self._relpath(i)}

    def sample_bytes(self, i: int) -> int:
        path, label = self.items[i]
        return (tar_member_bytes(os.path.getsize(path)) + tar_member_bytes(len(str(label)))
                + tar_member_bytes(len(str(i))) + tar_member_bytes(len(self._relpath(i).encode())))


def digits_source() -> ArraySource:
    """scikit-learn's 1,797 8×8 digits; grey levels 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return ArraySource(images, d.target, [str(c) for c in d.target_names], {"name": "digits"})


def read_idx(path: str) -> np.ndarray:
    """An MNIST-style idx file (optionally gzipped) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not a uint8 idx file")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(dirname: str, stem: str) -> str:
    for name in (f"{stem}.gz", stem):
        path = os.path.join(dirname, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{stem}[.gz] not found in {dirname}")


def fmnist_source(split: str, dirname: str = "") -> ArraySource:
    """Fashion-MNIST from its idx files (Debian's dataset-fashion-mnist by default); split train|test."""
    dirname = dirname or FMNIST_DIR
    prefix = {"train": "train", "test": "t10k", "eval": "t10k"}[split]
    images = read_idx(_find(dirname, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(dirname, f"{prefix}-labels-idx1-ubyte"))
    return ArraySource(images, labels, FMNIST_CLASSES, {"name": "fmnist", "split": split, "dir": dirname})
