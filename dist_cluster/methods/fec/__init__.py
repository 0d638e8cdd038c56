"""FEC (SPEC FEC): image classification with the clustering backbone registered in timm (fec_small/base/large).
"""
from dist_cluster.methods import lazy_exports
from dist_cluster.methods.fec.config import FecClassificationConfig

__all__ = ["FecClassificationConfig", "FecClassification"]
__getattr__ = lazy_exports(__name__, {"FecClassification": "method"})
