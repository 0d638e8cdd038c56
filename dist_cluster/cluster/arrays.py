"""A user's feature array in memory: `.npy`, `.npz` or `.pt` files, validated with errors that say what to fix.

Features: one N×D float array (a `.npy`, the `.npz`/`.pt` key `features`, `X`, `x` or `data`, or the only
array the file holds). Labels are optional: a second file, or a key (`labels`, `y`, `targets`) of the same
`.npz`/`.pt`. Labels of any type are mapped to 0..C−1 in sorted order (their names become the class names).
"""
from __future__ import annotations

import os

import numpy as np

from dist_cluster.errors import UserError

FEATURE_KEYS = ("features", "X", "x", "data", "embeddings")
LABEL_KEYS = ("labels", "y", "targets", "label", "target")


class InputError(UserError, ValueError):
    """Bad user input; the message says what was found and what is expected."""


def _no_objects(load, path: str):
    try:
        return load()
    except ValueError as e:
        if "allow_pickle" in str(e):   # an object array: numpy would unpickle it, which is refused
            raise InputError(f"{path} holds Python objects (an object-dtype array), not numbers; save a float "
                             "array, e.g. np.save(path, np.asarray(x, dtype=np.float32))") from None
        raise


def _named_arrays(path: str) -> dict | None:
    """{name: array} for .npz and dict-valued .pt files, None for a single array (.npy, tensor .pt)."""
    if path.endswith(".npz"):
        def load():
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        return _no_objects(load, path)
    if path.endswith(".pt") or path.endswith(".pth"):
        import torch
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict):
            return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in obj.items()}
        return None
    return None


def _single_array(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return _no_objects(lambda: np.load(path, allow_pickle=False), path)
    if path.endswith(".pt") or path.endswith(".pth"):
        import torch
        return torch.load(path, map_location="cpu", weights_only=True).numpy()
    raise InputError(f"{path}: unknown array format; use .npy, .npz or .pt")


def _pick(arrays: dict, path: str, key: str | None, candidates: tuple, what: str, required: bool):
    if key:
        if key not in arrays:
            raise InputError(f"{path} has no array '{key}' for the {what}; arrays found: {sorted(arrays)}")
        return arrays[key]
    for k in candidates:
        if k in arrays:
            return arrays[k]
    if what == "features" and len(arrays) == 1:
        return next(iter(arrays.values()))
    if required:
        raise InputError(f"{path}: cannot tell which array holds the {what}; arrays found: {sorted(arrays)}; "
                         f"name it {candidates[0]!r} or pass its key")
    return None


def read_features(path: str, labels: str | None = None, features_key: str | None = None,
                  labels_key: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(X, y or None) from the files; see the module doc for the accepted layouts."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    arrays = _named_arrays(path)
    if arrays is None:
        if features_key or labels_key:
            raise InputError(f"{path} holds one array, not named arrays, so it has no key "
                             f"'{features_key or labels_key}'; give the labels as a second file (--labels y.npy) "
                             "or save an .npz: np.savez(path, features=X, labels=y)")
        x, y = _single_array(path), None
    else:
        x = _pick(arrays, path, features_key, FEATURE_KEYS, "features", True)
        y = _pick(arrays, path, labels_key, LABEL_KEYS, "labels", bool(labels_key))
    if labels:
        if not os.path.exists(labels):
            raise InputError(f"{labels}: no such labels file")
        named = _named_arrays(labels)
        y = _single_array(labels) if named is None else _pick(named, labels, labels_key, LABEL_KEYS, "labels", True)
    return check_features(x, path), (None if y is None else np.asarray(y))


def check_features(x, name: str = "X") -> np.ndarray:
    """X as a C-contiguous float32 N×D array; an error naming the problem (dims, dtype, first bad row)."""
    x = np.asarray(x)
    if x.ndim != 2:
        hint = " (one sample? use X.reshape(1, -1); one feature? X.reshape(-1, 1))" if x.ndim == 1 else \
            " (images? pass a folder of images, or flatten: X.reshape(len(X), -1))" if x.ndim > 2 else ""
        raise InputError(f"{name}: expected a 2-D array N×D (samples × features), got shape {x.shape}{hint}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or np.iscomplexobj(x):
        raise InputError(f"{name}: expected real numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"{name}: empty array of shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(x[row, col]) else "Inf"
        raise InputError(f"{name}: {int(bad.any(axis=1).sum())} rows hold NaN or Inf; the first is row {row} "
                         f"({kind} in column {col}); drop or impute them first")
    return x


def encode_labels(y, n: int, name: str = "labels") -> tuple[np.ndarray, list[str]]:
    """(labels as 0..C−1 int64, class names) for labels of any type; length must be n."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array of N labels, got shape {y.shape}")
    if len(y) != n:
        raise InputError(f"{name}: {len(y)} labels for {n} samples")
    classes, codes = np.unique(y, return_inverse=True)
    return codes.astype(np.int64), [str(c) for c in classes]


def check_k(k: int, n: int) -> None:
    if k < 2:
        raise InputError(f"k={k}: need at least 2 clusters")
    if k > n:
        raise InputError(f"k={k} clusters but only N={n} samples: k must be at most N")
