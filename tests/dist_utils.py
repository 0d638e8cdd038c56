"""Run a function on W ranks and collect each rank's result, with `all_to_all` refused on every rank: gloo lacks
it for CUDA tensors, so no collective of the package may reach it. Calls run on persistent worlds (see
persistent_worlds.py); `fresh=True` spawns new processes for the one call, as the package's helper does."""
import persistent_worlds
import torch.distributed as dist

from dist_cluster.distributed.spawn import free_port
from dist_cluster.distributed.spawn import run_world as _spawn_world

GPU_BACKEND = "cpu:gloo,cuda:gloo"     # the per-device group string of GPU runs; it serves CPU tensors here too
BACKENDS = ("gloo", GPU_BACKEND)

__all__ = ["BACKENDS", "GPU_BACKEND", "free_port", "run_world"]


def _refuse(*args, **kwargs):
    raise AssertionError("all_to_all was called (gloo has no all_to_all for CUDA tensors)")


def _without_all_to_all(rank, world, fn, *args):
    dist.all_to_all = dist.all_to_all_single = _refuse
    return fn(rank, world, *args)


def run_world(fn, world_size: int = 2, *args, threads: int = 1, backend: str = "gloo", fresh: bool = False,
              timeout: float = 600.0) -> list:
    """fn(rank, world_size, *args) on every rank; returns [result of rank 0, 1, ...]. An error on a rank raises
    here with its traceback. `timeout` bounds a persistent world's call (a fresh one has none)."""
    if fresh:
        return _spawn_world(_without_all_to_all, world_size, fn, *args, threads=threads, backend=backend)
    return persistent_worlds.run(_without_all_to_all, world_size, (fn, *args), threads=threads, backend=backend,
                                 timeout=timeout)
