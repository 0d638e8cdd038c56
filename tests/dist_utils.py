"""Run a function on W ranks and collect each rank's result (the package's spawn helper), with `all_to_all`
refused on every rank: gloo lacks it for CUDA tensors, so no collective of the package may reach it."""
import torch.distributed as dist

from dist_cluster.distributed.spawn import free_port
from dist_cluster.distributed.spawn import run_world as _run_world

GPU_BACKEND = "cpu:gloo,cuda:gloo"     # the per-device group string of GPU runs; it serves CPU tensors here too
BACKENDS = ("gloo", GPU_BACKEND)

__all__ = ["BACKENDS", "GPU_BACKEND", "free_port", "run_world"]


def _refuse(*args, **kwargs):
    raise AssertionError("all_to_all was called (gloo has no all_to_all for CUDA tensors)")


def _without_all_to_all(rank, world, fn, *args):
    dist.all_to_all = dist.all_to_all_single = _refuse
    return fn(rank, world, *args)


def run_world(fn, world_size: int = 2, *args, threads: int = 1, backend: str = "gloo") -> list:
    return _run_world(_without_all_to_all, world_size, fn, *args, threads=threads, backend=backend)
