"""UNIC (SPEC UNIC): exact neighbour mining over the data set, cleaning, negatives; clustering and GCD.

The config is light to import (recipes, the Slurm submitter); the Method loads its models on first use.
"""
from dist_cluster.methods.unic.config import UnicConfig

__all__ = ["UnicConfig", "UnicMethod"]


def __getattr__(name: str):
    if name == "UnicMethod":
        from dist_cluster.methods.unic.method import UnicMethod
        return UnicMethod
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
