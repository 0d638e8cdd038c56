from dist_cluster.eval.cluster_metrics import (
                                               cluster_acc,
                                               cluster_metrics,
                                               contingency,
                                               gcd_accuracy,
                                               hungarian_match,
                                               topk_accuracy,
)
from dist_cluster.eval.gather import gather_in_index_order

__all__ = ["cluster_acc", "cluster_metrics", "contingency", "gcd_accuracy", "hungarian_match", "topk_accuracy",
           "gather_in_index_order"]
