"""Saving a sharded DeepSpeed checkpoint: DeepSpeed's files, each rank's own state, then rank 0's COMPLETE
marker and DeepSpeed's `latest` pointer; old tags are removed only after a newer one is complete. A save that
runs out of space removes its partial folder and says so (DiskFull)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import time

import torch

from dist_cluster.checkpoint import rng
from dist_cluster.checkpoint.integrity import file_list, list_files, marker_digest
from dist_cluster.checkpoint.layout import MARKER, TAG_RE, atomic_write, complete_tags, latest, tag_for, write_text
from dist_cluster.distributed import barrier
from dist_cluster.errors import UserError

# A short write leaves the filesystem full to within a few blocks; more free space than this means the write
# failed for another reason.
LOW_SPACE = 16 << 20


class DiskFull(UserError, OSError):
    """A save ran out of space (errno ENOSPC); its partial folder was removed and the previous checkpoint stays
    selected. Reported as an `error:` line (exit 2); not a RunDirError, which at start-up is undone."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _free_bytes(path: str) -> int | None:
    for p in (path, os.path.dirname(path)):
        try:
            return shutil.disk_usage(p).free
        except OSError:
            continue
    return None


def _is_out_of_space(e: BaseException, free: int | None) -> bool:
    """ENOSPC/EDQUOT anywhere in the chain, or torch's short-write errors (which lose the errno) on a filesystem
    left (nearly) full."""
    if any(isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT) for x in _chain(e)):
        return True
    text = " ".join(str(x) for x in _chain(e))
    short_write = any(s in text for s in ("unexpected pos", "enforce fail", "file write failed", "failed writing"))
    return short_write and free is not None and free < LOW_SPACE


def _tree_bytes(path: str) -> int:
    return sum(size for _, size in list_files(path)) if os.path.isdir(path) else 0


def _raise_save_failed(e: Exception, ckpt_dir: str, path: str, remove: bool):
    """Raise DiskFull in those words for a save that ran out of space, else `e` with the folder named."""
    free = _free_bytes(path)
    partial = _tree_bytes(path) if remove else 0
    if remove:
        shutil.rmtree(path, ignore_errors=True)
    if not _is_out_of_space(e, free):
        if hasattr(e, "add_note"):
            e.add_note(f"while saving checkpoint {path}" + (" (its partial folder was removed)" if remove else ""))
        raise e
    prev = latest(ckpt_dir)
    what = (f"the partial checkpoint ({partial} bytes) was removed; " if remove else "")
    raise DiskFull(f"no space left on device saving checkpoint {path}: {free} bytes free in {ckpt_dir} when the "
                   f"write failed; {what}"
                   + (f"{os.path.join(ckpt_dir, prev)} stays selected" if prev else "no earlier checkpoint exists")
                   + ". Free some space and re-run the same command to resume") from e


def save(engine, ckpt_dir: str, step: int, client_state: dict, rank: int, world_size: int, keep_last: int) -> str:
    """Collective: every rank must call it."""
    tag = tag_for(step)
    path = os.path.join(ckpt_dir, tag)
    if rank == 0 and os.path.isdir(path) and not os.path.exists(os.path.join(path, MARKER)):
        shutil.rmtree(path, ignore_errors=True)   # an interrupted save of this step: its files must not be listed
    barrier()
    try:
        engine.save_checkpoint(ckpt_dir, tag=tag, client_state=client_state, save_latest=False)
        os.makedirs(path, exist_ok=True)
        own = {"rng": rng.capture(), "rank": rank, "position": {k: int(v) for k, v in client_state.items()
                                                                  if isinstance(v, int)}}
        atomic_write(os.path.join(path, f"rank{rank}.pt"), lambda p: torch.save(own, p))
    except Exception as e:
        _raise_save_failed(e, ckpt_dir, path, remove=True)
    barrier()
    files = file_list(path, rank, world_size)
    if rank == 0:
        meta = {"step": step, "world_size": world_size, "time": time.time()} | {
            k: v for k, v in client_state.items() if isinstance(v, (int, float, str))} | {"files": files}
        meta["marker_sha256"] = marker_digest(meta)
        try:
            atomic_write(os.path.join(path, MARKER), write_text(json.dumps(meta)))
        except OSError as e:
            _raise_save_failed(e, ckpt_dir, path, remove=True)
        # DeepSpeed's own pointer, so zero_to_fp32.py and load_checkpoint() work without a tag; only ever
        # names a complete checkpoint.
        try:
            atomic_write(os.path.join(ckpt_dir, "latest"), write_text(tag))
        except OSError as e:
            _raise_save_failed(e, ckpt_dir, path, remove=False)
        rotate(ckpt_dir, keep_last)
    barrier()
    return path


def rotate(ckpt_dir: str, keep_last: int) -> None:
    tags = complete_tags(ckpt_dir)
    newest = tags[-1] if tags else None
    for t in tags[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(os.path.join(ckpt_dir, t), ignore_errors=True)
        shutil.rmtree(os.path.join(ckpt_dir, t + "_universal"), ignore_errors=True)
    # Leftovers of interrupted saves older than the newest complete one are garbage.
    for t in os.listdir(ckpt_dir):
        if TAG_RE.match(t) and newest and t < newest and t not in tags:
            shutil.rmtree(os.path.join(ckpt_dir, t), ignore_errors=True)
