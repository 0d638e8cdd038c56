"""Run a function on W gloo ranks and collect each rank's result (the package's spawn helper)."""
from dist_cluster.distributed.spawn import free_port, run_world

__all__ = ["free_port", "run_world"]
