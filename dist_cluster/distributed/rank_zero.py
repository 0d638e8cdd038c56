"""Picklable objects to and from one rank, and work that runs on rank 0 alone while the others wait for it."""
from __future__ import annotations

import datetime

import torch.distributed as dist

from dist_cluster.distributed.collectives import _multi, rank, world_size


def gather_object_to(obj, dst: int = 0) -> list | None:
    """Rank dst receives every rank's picklable `obj` as a list (rank order); other ranks get None."""
    if not _multi():
        return [obj]
    out = [None] * world_size() if rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def broadcast_object(obj, src: int = 0):
    if not _multi():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


# Rank-0-only work (the final report, baselines, figures) can take far longer than a training collective may
# wait; the other ranks wait for it on a group of their own whose timeout covers it.
MAIN_ONLY_TIMEOUT = datetime.timedelta(hours=12)
_patient = {"world": None, "group": None}


def _patient_group():
    if _patient["world"] is not dist.group.WORLD:      # a new default group (runs may share a process)
        _patient.update(world=dist.group.WORLD, group=dist.new_group(backend="gloo", timeout=MAIN_ONLY_TIMEOUT))
    return _patient["group"]


def main_only(fn, *args, **kwargs):
    """fn(*args, **kwargs) on rank 0 only, called by every rank; the others wait for it (up to MAIN_ONLY_TIMEOUT,
    whatever the training group's timeout) and get its result. An error on rank 0 is raised on every rank."""
    if not _multi():
        return fn(*args, **kwargs)
    group, out, err = _patient_group(), None, None
    if rank() == 0:
        try:
            out = fn(*args, **kwargs)
        except BaseException as e:   # the others must not wait out the timeout for a result that never comes
            err = e
    box = [(err is None, out if err is None else f"{type(err).__name__}: {err}")]
    dist.broadcast_object_list(box, src=0, group=group)
    if err is not None:
        raise err
    ok, value = box[0]
    if not ok:
        raise RuntimeError(f"rank 0 failed in {getattr(fn, '__qualname__', fn)}: {value}")
    return value
