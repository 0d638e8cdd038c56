"""Choosing the checkpoint to resume from: the newest complete tag that verifies; damaged newer ones are renamed
`<tag>.damaged` (with a warning) and the previous good one is used."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import torch

from dist_cluster.checkpoint.integrity import verify
from dist_cluster.checkpoint.layout import MARKER, atomic_write, complete_tags, read_meta, write_text
from dist_cluster.distributed import broadcast_object
from dist_cluster.distributed import rank as dist_rank
from dist_cluster.engine.rundir import RunDirError


class DamagedCheckpoints(RunDirError):
    """Every complete checkpoint failed verification: refused at start-up, printed as an `error:` line (exit 2)."""


def latest_finite(ckpt_dir: str) -> str | None:
    """Newest complete tag whose parameters were recorded finite when it was written (and whose files still have
    their recorded sizes: checksums are left to the resume)."""
    for tag in reversed(complete_tags(ckpt_dir)):
        if verify(ckpt_dir, tag, checksums=False):
            continue
        if read_meta(ckpt_dir, tag).get("params_finite") is True:
            return tag
    return None


def _set_aside(ckpt_dir: str, tag: str) -> str:
    """Rename a damaged tag to <tag>.damaged (never matched by TAG_RE, so never picked again or rotated)."""
    dest, n = os.path.join(ckpt_dir, f"{tag}.damaged"), 1
    while os.path.exists(dest):
        dest, n = os.path.join(ckpt_dir, f"{tag}.damaged{n}"), n + 1
    os.rename(os.path.join(ckpt_dir, tag), dest)
    # converted from the damaged tag; a later save of the same step must not find it and reuse it
    shutil.rmtree(os.path.join(ckpt_dir, f"{tag}_universal"), ignore_errors=True)
    return dest


def _select(ckpt_dir: str) -> str | None:
    """Rank 0: the newest complete tag that verifies. Damaged newer ones are set aside, each with a one-line
    warning; if none verifies, nothing is touched and DamagedCheckpoints names them all."""
    damaged, chosen = [], None
    for tag in reversed(complete_tags(ckpt_dir)):
        problems = verify(ckpt_dir, tag)
        if problems is None:
            print(f"warning: checkpoint {os.path.join(ckpt_dir, tag)} predates recorded file checksums; loading it "
                  "unverified", file=sys.stderr, flush=True)
        if not problems:
            chosen = tag
            break
        damaged.append((tag, problems))
    if damaged and chosen is None:
        raise DamagedCheckpoints(
            f"no usable checkpoint in {ckpt_dir}: " + "; ".join(
                f"{os.path.join(ckpt_dir, t)} is damaged ({', '.join(p)})" for t, p in damaged)
            + ". Nothing was changed; move them away to start from scratch")
    for tag, problems in damaged:
        moved = _set_aside(ckpt_dir, tag)
        print(f"warning: checkpoint {os.path.join(ckpt_dir, tag)} is damaged ({', '.join(problems)}); moved to "
              f"{moved}, resuming from {os.path.join(ckpt_dir, chosen)}", file=sys.stderr, flush=True)
    pointer = os.path.join(ckpt_dir, "latest")
    if chosen is not None and _read_text(pointer) != chosen:   # DeepSpeed's pointer names what is resumed
        atomic_write(pointer, write_text(chosen))
    return chosen


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def resume_tag(ckpt_dir: str) -> str | None:
    """Collective: the newest complete checkpoint that passes verification (sizes, then checksums), or None for
    a fresh start. Rank 0 verifies and sets damaged ones aside; its decision is broadcast. Raises
    DamagedCheckpoints on every rank if no complete checkpoint is usable."""
    decision = None
    if dist_rank() == 0:
        try:
            decision = ("tag", _select(ckpt_dir))
        except DamagedCheckpoints as e:
            decision = ("error", str(e))
    kind, value = broadcast_object(decision)
    if kind == "error":
        raise DamagedCheckpoints(value)
    return value


def to_universal(ckpt_dir: str, tag: str) -> str:
    """Convert a ZeRO checkpoint to DeepSpeed's universal format (world-size independent); returns its tag."""
    out_tag = f"{tag}_universal"
    out = os.path.join(ckpt_dir, out_tag)
    if os.path.exists(os.path.join(out, MARKER)):
        return out_tag
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder",
           os.path.join(ckpt_dir, tag), "--output_folder", out, "--inject_missing_state", "--num_extract_workers",
           "1", "--num_merge_workers", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"converting {tag} to a universal checkpoint failed:\n{res.stdout[-2000:]}\n"
                           f"{res.stderr[-4000:]}")
    # the list describes the original tag's files, not the converted ones
    meta = {k: v for k, v in read_meta(ckpt_dir, tag).items() if k not in ("files", "marker_sha256")}
    atomic_write(os.path.join(out, MARKER), write_text(json.dumps(meta)))
    return out_tag


def load_rank_state(ckpt_dir: str, tag: str, rank: int) -> dict | None:
    path = os.path.join(ckpt_dir, tag, f"rank{rank}.pt")
    if not os.path.exists(path):
        return None
    return torch.load(path, weights_only=True)
