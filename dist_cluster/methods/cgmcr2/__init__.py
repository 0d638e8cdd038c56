"""CgMCR² (SPEC CgMCR²): a feature head and a Gumbel cluster head on frozen pre-features, −R + Rc + Ncut over
the global batch.

The config is light to import (recipes, the Slurm submitter); the Method loads its models on first use.
"""
from dist_cluster.methods.cgmcr2.config import CgMCR2Config

__all__ = ["CgMCR2Config", "CgMCR2"]


def __getattr__(name: str):
    if name == "CgMCR2":
        from dist_cluster.methods.cgmcr2.method import CgMCR2
        return CgMCR2
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
