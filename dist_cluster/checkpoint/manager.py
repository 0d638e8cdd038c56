"""Sharded DeepSpeed checkpoints with a completeness marker, rotation and automatic resume.

Layout: <run_dir>/checkpoints/step000001234/ holds DeepSpeed's files, one `rank<r>.pt` per rank (RNG states and
data position) and, written last by rank 0 after a barrier, `COMPLETE` (JSON, with `params_finite`); then
DeepSpeed's `latest` pointer is moved to it. Only tags with COMPLETE are
ever resumed from, so a save interrupted mid-write leaves the previous checkpoint selected; old tags are
removed only after a newer one is complete.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import torch

from dist_cluster.checkpoint import rng
from dist_cluster.distributed import barrier

TAG_RE = re.compile(r"^step(\d{9})$")


def tag_for(step: int) -> str:
    return f"step{step:09d}"


def _atomic_write(path: str, write) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    write(tmp)
    os.replace(tmp, path)


def complete_tags(ckpt_dir: str) -> list[str]:
    """Complete checkpoint tags, oldest first."""
    if not os.path.isdir(ckpt_dir):
        return []
    tags = [t for t in os.listdir(ckpt_dir)
            if TAG_RE.match(t) and os.path.exists(os.path.join(ckpt_dir, t, "COMPLETE"))]
    return sorted(tags)


def latest(ckpt_dir: str) -> str | None:
    tags = complete_tags(ckpt_dir)
    return tags[-1] if tags else None


def latest_finite(ckpt_dir: str) -> str | None:
    """Newest complete tag whose parameters were recorded finite when it was written."""
    for tag in reversed(complete_tags(ckpt_dir)):
        if read_meta(ckpt_dir, tag).get("params_finite") is True:
            return tag
    return None


def read_meta(ckpt_dir: str, tag: str) -> dict:
    with open(os.path.join(ckpt_dir, tag, "COMPLETE")) as f:
        return json.load(f)


def save(engine, ckpt_dir: str, step: int, client_state: dict, rank: int, world_size: int, keep_last: int) -> str:
    """Collective: every rank must call it."""
    tag = tag_for(step)
    engine.save_checkpoint(ckpt_dir, tag=tag, client_state=client_state, save_latest=False)
    path = os.path.join(ckpt_dir, tag)
    os.makedirs(path, exist_ok=True)
    own = {"rng": rng.capture(), "rank": rank, "position": {k: int(v) for k, v in client_state.items()
                                                              if isinstance(v, int)}}
    _atomic_write(os.path.join(path, f"rank{rank}.pt"), lambda p: torch.save(own, p))
    barrier()
    if rank == 0:
        meta = {"step": step, "world_size": world_size, "time": time.time()} | {
            k: v for k, v in client_state.items() if isinstance(v, (int, float, str))}
        _atomic_write(os.path.join(path, "COMPLETE"), lambda p: open(p, "w").write(json.dumps(meta)))
        # DeepSpeed's own pointer, so zero_to_fp32.py and load_checkpoint() work without a tag; only ever
        # names a complete checkpoint.
        _atomic_write(os.path.join(ckpt_dir, "latest"), lambda p: open(p, "w").write(tag))
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


def to_universal(ckpt_dir: str, tag: str) -> str:
    """Convert a ZeRO checkpoint to DeepSpeed's universal format (world-size independent); returns its tag."""
    out_tag = f"{tag}_universal"
    out = os.path.join(ckpt_dir, out_tag)
    if os.path.exists(os.path.join(out, "COMPLETE")):
        return out_tag
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder",
           os.path.join(ckpt_dir, tag), "--output_folder", out, "--inject_missing_state", "--num_extract_workers",
           "1", "--num_merge_workers", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"converting {tag} to a universal checkpoint failed:\n{res.stdout[-2000:]}\n"
                           f"{res.stderr[-4000:]}")
    open(os.path.join(out, "COMPLETE"), "w").write(json.dumps(read_meta(ckpt_dir, tag)))
    return out_tag


def load_rank_state(ckpt_dir: str, tag: str, rank: int) -> dict | None:
    path = os.path.join(ckpt_dir, tag, f"rank{rank}.pt")
    if not os.path.exists(path):
        return None
    return torch.load(path, weights_only=True)
