from dist_cluster.logging.metrics import MetricLogger

__all__ = ["MetricLogger"]
