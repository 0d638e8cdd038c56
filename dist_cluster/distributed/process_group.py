"""The process group of a run: its backend per device, DeepSpeed's initialisation on CPU (gloo) or CUDA (NCCL for
CUDA tensors, gloo for CPU ones), and a clean shutdown."""
from __future__ import annotations

import datetime
import gc
import os
import sys

import torch

from dist_cluster.distributed.env import DistEnv


def process_group_backend(cuda: bool) -> str:
    """The torch.distributed backend string for this machine.

    On CUDA a group made with "nccl" alone has no backend for CPU tensors (every collective on one fails), so
    the group gets one backend per device: NCCL for CUDA tensors, gloo for CPU ones. `DIST_CLUSTER_BACKEND`
    overrides it, e.g. "cpu:gloo,cuda:gloo" for several ranks sharing one GPU (NCCL refuses that).
    """
    return os.environ.get("DIST_CLUSTER_BACKEND") or ("cpu:gloo,cuda:nccl" if cuda else "gloo")


def reset_deepspeed_groups() -> None:
    """DeepSpeed caches its process groups module-wide; a new group (a second run in the same process) must not
    reuse those of a destroyed one."""
    groups = sys.modules.get("deepspeed.utils.groups")
    if groups is None:
        return
    for name in ("_WORLD_GROUP", "_ZERO_PARAM_INTRA_PARALLEL_GROUP", "_DATA_PARALLEL_GROUP", "_MODEL_PARALLEL_GROUP",
                 "_TENSOR_MODEL_PARALLEL_GROUP", "mpu", "mesh_device"):
        if hasattr(groups, name):
            setattr(groups, name, None)
    for name in ("_EXPERT_PARALLEL_GROUP", "_EXPERT_PARALLEL_GROUP_RANKS", "_EXPERT_DATA_PARALLEL_GROUP",
                 "_EXPERT_DATA_PARALLEL_GROUP_RANKS", "_ALL_TO_ALL_GROUP"):
        getattr(groups, name, {}).clear()


def init_distributed(env: DistEnv, timeout_min: float = 30.0) -> torch.device:
    env.export()
    if not torch.distributed.is_initialized():
        reset_deepspeed_groups()
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed
    import deepspeed.comm.torch  # noqa: F401  (the package attribute `torch` shadows it; use sys.modules)
    timeout = datetime.timedelta(minutes=timeout_min)
    backend = process_group_backend(cuda)
    if env.world_size == 1 and not torch.distributed.is_initialized():
        # one process: an in-memory store, no rendezvous port that another local job could hold
        torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(), rank=0, world_size=1,
                                             timeout=timeout)
    if not cuda:
        # skip a 30 s JIT build; gloo collectives are used instead
        sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
        # an explicit OMP_NUM_THREADS wins: on a shared machine one thread per process is often much faster
        threads = int(os.environ.get("OMP_NUM_THREADS") or 0)
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // max(env.local_world_size, 1)))
        deepspeed.init_distributed(dist_backend=backend, timeout=timeout, verbose=False)
        return torch.device("cpu")
    device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = True   # fp32 matmuls and convolutions on tensor cores
    torch.backends.cudnn.allow_tf32 = True
    if env.local_rank != device.index and not torch.distributed.is_initialized():
        # Ranks sharing a GPU: DeepSpeed would bind rank r to cuda:r, so the group is made here and adopted.
        import torch.distributed as dist
        dist.init_process_group(backend, timeout=timeout, device_id=device if env.world_size > 1 else None)
    deepspeed.init_distributed(dist_backend=backend, timeout=timeout, verbose=False)
    return device


def shutdown(*objs) -> None:
    """Drop the engine, collect, barrier, destroy the group: avoids a gloo abort at interpreter exit."""
    import torch.distributed as dist

    from dist_cluster.distributed import barrier
    del objs
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        barrier()
        dist.destroy_process_group()
