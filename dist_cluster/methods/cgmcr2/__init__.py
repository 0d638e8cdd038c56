"""CgMCR² (SPEC CgMCR²): a feature head and a Gumbel cluster head on frozen pre-features, −R + Rc + Ncut over
the global batch.
"""
from dist_cluster.methods import lazy_exports
from dist_cluster.methods.cgmcr2.config import CgMCR2Config

__all__ = ["CgMCR2Config", "CgMCR2"]
__getattr__ = lazy_exports(__name__, {"CgMCR2": "method"})
