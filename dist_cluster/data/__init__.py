"""Sharded WebDataset data layer: shard writing, manifests, balanced resumable loaders, transforms, features.

Contract with the engine and the methods:
  prepare(cfg) -> {"train": manifest, "eval": manifest}
  build_train_loader(cfg, manifest, *, seed, rank, world_size, transform=None, views=None) -> Loader
  build_eval_loader(cfg, manifest, *, rank, world_size, transform=None) -> iterable of batches
  RandomAccessDataset(manifest, transform=None)[global_index] -> sample dict
  load_feature_arrays(manifest) -> (features N×D float32, labels N long, index N long)
  TensorLoader(features, labels, batch_size, seed, rank, world_size, drop_last=True) -> Loader
  make_transform(name, image_size, in_chans, ...)
Batches: "image" (B,C,H,W) or "views" (list of tensors) or "feature" (B,D); "label" (B, -1 if unknown);
"index" (B, global index in manifest order); "_skipped" (0-dim: corrupt samples replaced in this batch).
"""
from dist_cluster.data import presets  # noqa: F401  (registers data=<name> presets)
from dist_cluster.data.config import DataConfig
from dist_cluster.data.prepare import prepare  # binds the function over the submodule's name

# The rest loads on first use: importing the config (which imports DataConfig) must not pull in timm.
_LAZY = {"build_eval_loader": "build", "build_train_loader": "build", "resolve_manifest": "build",
         "RandomAccessDataset": "dataset", "load_feature_arrays": "dataset", "Manifest": "manifest",
         "EpochPlan": "sampling", "TensorLoader": "sampling", "resume_batch": "sampling",
         "make_transform": "transforms", "transform_from_config": "transforms"}
__all__ = ["DataConfig", "prepare", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"dist_cluster.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dist_cluster.data' has no attribute {name!r}")
