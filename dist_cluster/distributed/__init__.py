from dist_cluster.distributed.backends import backend_serves, device_backend, serves
from dist_cluster.distributed.collectives import (
                                                  all_gather_nograd,
                                                  all_gather_varlen,
                                                  all_gather_with_grad,
                                                  all_reduce_max,
                                                  all_reduce_sum,
                                                  all_reduce_sum_with_grad,
                                                  barrier,
                                                  broadcast,
                                                  broadcast_async,
                                                  gather_to,
                                                  is_dist,
                                                  rank,
                                                  world_size,
)
from dist_cluster.distributed.env import DistEnv, resolve
from dist_cluster.distributed.rank_zero import broadcast_object, gather_object_to, main_only

__all__ = ["DistEnv", "resolve", "all_gather_with_grad", "all_gather_nograd", "all_gather_varlen",
           "all_reduce_max", "all_reduce_sum", "all_reduce_sum_with_grad", "backend_serves", "barrier", "broadcast",
           "broadcast_async", "broadcast_object", "device_backend", "gather_object_to", "gather_to", "is_dist",
           "main_only", "rank", "serves", "world_size"]
