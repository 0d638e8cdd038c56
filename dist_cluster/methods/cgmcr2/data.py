"""CgMCR²'s pre-features in memory: {"train": (X, y, index), "eval": (X, y, index)}.

Feature splits come from the data layer: `dist_cluster.data.prepare(cfg.data)` returns the manifests
(data.train / data.eval when given, else the named data set, e.g. `digits_pixels` or `fmnist_effnet`, written
on first use) and `load_feature_arrays` reads them. Loaded splits are kept per process, keyed by manifest
and sample limit, so the engine's repeated calls and several runs in one process read the shards once.
"""
from __future__ import annotations

import os

import torch

_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _load(manifest: str, limit: int):
    from dist_cluster.data import load_feature_arrays
    key = (manifest, limit)
    if key not in _CACHE:
        _CACHE[key] = load_feature_arrays(manifest, limit=limit)
    return _CACHE[key]


def manifests(data_cfg) -> dict[str, str]:
    from dist_cluster.data import prepare
    return prepare(data_cfg)


def _check(paths: dict[str, str], data_cfg) -> None:
    for split, path in paths.items():
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{split} feature manifest {path} not found (data set '{data_cfg.name}'): extract the features "
                "first with tools/extract_features.py (see the recipe's docstring) or point data.train / "
                "data.eval at existing feature manifests")


def load_arrays(data_cfg) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    paths = manifests(data_cfg)
    _check(paths, data_cfg)
    return {"train": _load(paths["train"], data_cfg.train_samples),
            "eval": _load(paths["eval"], data_cfg.eval_samples)}


def feature_dim(data_cfg) -> int:
    from dist_cluster.data import Manifest
    paths = manifests(data_cfg)
    _check(paths, data_cfg)
    m = Manifest.load(paths["train"])
    if m.kind != "feature":
        raise ValueError(f"CgMCR² clusters pre-features, but data set '{data_cfg.name}' holds {m.kind}s; use a "
                         "feature set (digits_pixels, fmnist_effnet, or a manifest from tools/extract_features.py)")
    return int(m.feature_dim)
