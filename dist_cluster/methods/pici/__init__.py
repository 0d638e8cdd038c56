"""PICI (SPEC PICI): ViT-MAE pre-training, instance and cluster contrast, cross-level interaction boosting.
"""
from dist_cluster.methods import lazy_exports
from dist_cluster.methods.pici.config import PICIConfig

__all__ = ["PICIConfig", "PICI"]
__getattr__ = lazy_exports(__name__, {"PICI": "method"})
