"""FEC (SPEC FEC): image classification with the clustering backbone registered in timm (fec_small/base/large).

The config is light to import (recipes, the Slurm submitter); the Method loads its models on first use.
"""
from dist_cluster.methods.fec.config import FecClassificationConfig

__all__ = ["FecClassificationConfig", "FecClassification"]


def __getattr__(name: str):
    if name == "FecClassification":
        from dist_cluster.methods.fec.method import FecClassification
        return FecClassification
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
