"""Model definitions. Importing this package registers the FEC variants with timm."""
from dist_cluster.models import fec  # noqa: F401  (registers fec_small / fec_base / fec_large)
from dist_cluster.models.fec import FEC, ClusterTrace

__all__ = ["FEC", "ClusterTrace"]
