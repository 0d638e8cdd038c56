from dist_cluster.logging.metrics import MetricLogger, read_records

__all__ = ["MetricLogger", "read_records"]
