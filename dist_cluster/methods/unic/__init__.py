"""UNIC (SPEC UNIC): exact neighbour mining over the data set, cleaning, negatives; clustering and GCD.
"""
from dist_cluster.methods import lazy_exports
from dist_cluster.methods.unic.config import UnicConfig

__all__ = ["UnicConfig", "UnicMethod"]
__getattr__ = lazy_exports(__name__, {"UnicMethod": "method"})
