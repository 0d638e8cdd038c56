"""The checkpoint folder's layout: one `step<9 digits>` folder per save, complete once its `COMPLETE` marker exists.

Layout: <run_dir>/checkpoints/step000001234/ holds DeepSpeed's files, one `rank<r>.pt` per rank (RNG states and
data position) and, written last by rank 0 after a barrier, `COMPLETE` (JSON, with `params_finite` and the size
and sha256 of every file of the tag); then DeepSpeed's `latest` pointer is moved to it. Only tags with COMPLETE
are ever resumed from, so a save interrupted mid-write leaves the previous checkpoint selected.
"""
from __future__ import annotations

import contextlib
import json
import os
import re

TAG_RE = re.compile(r"^step(\d{9})$")
MARKER = "COMPLETE"


def tag_for(step: int) -> str:
    return f"step{step:09d}"


def atomic_write(path: str, write) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(text: str):
    def write(p):
        with open(p, "w") as f:
            f.write(text)
    return write


def complete_tags(ckpt_dir: str) -> list[str]:
    """Complete checkpoint tags, oldest first."""
    if not os.path.isdir(ckpt_dir):
        return []
    tags = [t for t in os.listdir(ckpt_dir)
            if TAG_RE.match(t) and os.path.exists(os.path.join(ckpt_dir, t, MARKER))]
    return sorted(tags)


def latest(ckpt_dir: str) -> str | None:
    """Newest complete tag, unverified (resume_tag verifies)."""
    tags = complete_tags(ckpt_dir)
    return tags[-1] if tags else None


def read_meta(ckpt_dir: str, tag: str) -> dict:
    with open(os.path.join(ckpt_dir, tag, MARKER)) as f:
        return json.load(f)
