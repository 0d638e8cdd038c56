"""PICI (SPEC PICI): ViT-MAE pre-training, instance and cluster contrast, cross-level interaction boosting.

The config is light to import (recipes, the Slurm submitter); the Method loads its models on first use.
"""
from dist_cluster.methods.pici.config import PICIConfig

__all__ = ["PICIConfig", "PICI"]


def __getattr__(name: str):
    if name == "PICI":
        from dist_cluster.methods.pici.method import PICI
        return PICI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
