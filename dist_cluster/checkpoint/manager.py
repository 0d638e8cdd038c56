"""Sharded DeepSpeed checkpoints with a completeness marker, rotation and automatic resume.

Layout: <run_dir>/checkpoints/step000001234/ holds DeepSpeed's files, one `rank<r>.pt` per rank (RNG states and
data position) and, written last by rank 0 after a barrier, `COMPLETE` (JSON, with `params_finite` and the size
and sha256 of every file of the tag); then DeepSpeed's `latest` pointer is moved to it. Only tags with COMPLETE
are ever resumed from, so a save interrupted mid-write leaves the previous checkpoint selected; old tags are
removed only after a newer one is complete. On resume the newest complete tag is verified against its file list
first; a damaged one is renamed `<tag>.damaged` and the previous good one is used.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

import torch

from dist_cluster.checkpoint import rng
from dist_cluster.distributed import barrier, broadcast_object, gather_object_to
from dist_cluster.distributed import rank as dist_rank
from dist_cluster.engine.rundir import RunDirError
from dist_cluster.errors import UserError

TAG_RE = re.compile(r"^step(\d{9})$")
MARKER = "COMPLETE"
# A short write leaves the filesystem full to within a few blocks; more free space than this means the write
# failed for another reason.
LOW_SPACE = 16 << 20


class DamagedCheckpoints(RunDirError):
    """Every complete checkpoint failed verification: refused at start-up, printed as an `error:` line (exit 2)."""


class DiskFull(UserError, OSError):
    """A save ran out of space (errno ENOSPC); its partial folder was removed and the previous checkpoint stays
    selected. Reported as an `error:` line (exit 2); not a RunDirError, which at start-up is undone."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)


def tag_for(step: int) -> str:
    return f"step{step:09d}"


def _atomic_write(path: str, write) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _write_text(text: str):
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


def latest_finite(ckpt_dir: str) -> str | None:
    """Newest complete tag whose parameters were recorded finite when it was written (and whose files still have
    their recorded sizes: checksums are left to the resume)."""
    for tag in reversed(complete_tags(ckpt_dir)):
        if verify(ckpt_dir, tag, checksums=False):
            continue
        if read_meta(ckpt_dir, tag).get("params_finite") is True:
            return tag
    return None


def read_meta(ckpt_dir: str, tag: str) -> dict:
    with open(os.path.join(ckpt_dir, tag, MARKER)) as f:
        return json.load(f)


# ---- file lists and checksums --------------------------------------------------------------------------------
def _marker_digest(meta: dict) -> str:
    """sha256 of the marker's own content, so a damaged COMPLETE is told apart from an old one without a list."""
    rest = {k: v for k, v in meta.items() if k != "marker_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def _hash_file(path: str) -> dict:
    with open(path, "rb") as f:
        if hasattr(hashlib, "file_digest"):   # 3.11+: reads into one buffer, no per-chunk bytes objects
            h = hashlib.file_digest(f, "sha256")
        else:
            h = hashlib.sha256()
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return {"size": f.tell(), "sha256": h.hexdigest()}


def _list_files(path: str) -> list[tuple[str, int]]:
    out = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            if rel != MARKER and not rel.startswith(MARKER + ".tmp"):
                out.append((rel, os.path.getsize(full)))
    return sorted(out)


def _shares(listing: list[tuple[str, int]], world: int) -> list[list[str]]:
    """Files split between ranks by size, largest first to the least loaded (the same on every rank)."""
    load, shares = [0] * world, [[] for _ in range(world)]
    for rel, size in sorted(listing, key=lambda x: (-x[1], x[0])):
        r = load.index(min(load))
        load[r] += size
        shares[r].append(rel)
    return shares


def file_list(path: str, rank: int, world_size: int) -> dict | None:
    """Collective: size and sha256 of every file under the tag folder `path`, for rank 0's COMPLETE (None on the
    other ranks). Called after the ranks' barrier; each rank hashes a share of the files (balanced by size), so
    the time added does not grow with the world size.

    Cost, measured with the toy recipe at ZeRO 1 on one rank (2-core CPU machine, sha256 with SHA-NI at about
    0.85 GB/s, the files just written and read back from the page cache): a 26 MB checkpoint took 0.03 s to hash
    against 0.04 s for DeepSpeed's write; a 288 MB one 0.45 s against 1.0 s (medians of four saves). Hashing
    costs roughly half to as much as a write that only reaches the page cache, and less against a write to a
    real disk or network filesystem; with saves at epoch ends or every few hundred steps it is a small share of
    training time.
    """
    listing = broadcast_object(_list_files(path) if rank == 0 else None)
    mine = {rel: _hash_file(os.path.join(path, rel)) for rel in _shares(listing, world_size)[rank]}
    parts = gather_object_to(mine)
    if rank != 0:
        return None
    return dict(sorted(kv for part in parts for kv in part.items()))


def verify(ckpt_dir: str, tag: str, checksums: bool = True) -> list[str] | None:
    """What is wrong with a complete tag, one line per file ([] if nothing); None for a COMPLETE written before
    file lists were recorded (nothing to check against). Sizes are checked first, checksums only if all match."""
    path = os.path.join(ckpt_dir, tag)
    try:
        meta = read_meta(ckpt_dir, tag)
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        return [f"{MARKER}: unreadable ({e})"]
    if "files" not in meta and "marker_sha256" not in meta:
        return None
    if meta.get("marker_sha256") != _marker_digest(meta) or not isinstance(meta.get("files"), dict):
        return [f"{MARKER}: checksum mismatch"]
    problems = []
    for rel, want in meta["files"].items():
        try:
            size = os.path.getsize(os.path.join(path, rel))
        except OSError:
            problems.append(f"{rel}: missing")
            continue
        if size < want["size"]:
            problems.append(f"{rel}: truncated: {size} of {want['size']} bytes")
        elif size > want["size"]:
            problems.append(f"{rel}: {size} bytes, {want['size']} recorded")
    if problems or not checksums:
        return problems
    for rel, want in meta["files"].items():
        try:
            got = _hash_file(os.path.join(path, rel))
        except OSError as e:
            problems.append(f"{rel}: unreadable ({e.strerror or e})")
            continue
        if got["sha256"] != want["sha256"]:
            problems.append(f"{rel}: checksum mismatch")
    return problems


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
        _atomic_write(pointer, _write_text(chosen))
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


# ---- saving --------------------------------------------------------------------------------------------------
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
    return sum(size for _, size in _list_files(path)) if os.path.isdir(path) else 0


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
        _atomic_write(os.path.join(path, f"rank{rank}.pt"), lambda p: torch.save(own, p))
    except Exception as e:
        _raise_save_failed(e, ckpt_dir, path, remove=True)
    barrier()
    files = file_list(path, rank, world_size)
    if rank == 0:
        meta = {"step": step, "world_size": world_size, "time": time.time()} | {
            k: v for k, v in client_state.items() if isinstance(v, (int, float, str))} | {"files": files}
        meta["marker_sha256"] = _marker_digest(meta)
        try:
            _atomic_write(os.path.join(path, MARKER), _write_text(json.dumps(meta)))
        except OSError as e:
            _raise_save_failed(e, ckpt_dir, path, remove=True)
        # DeepSpeed's own pointer, so zero_to_fp32.py and load_checkpoint() work without a tag; only ever
        # names a complete checkpoint.
        try:
            _atomic_write(os.path.join(ckpt_dir, "latest"), _write_text(tag))
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
    _atomic_write(os.path.join(out, MARKER), _write_text(json.dumps(meta)))
    return out_tag


def load_rank_state(ckpt_dir: str, tag: str, rank: int) -> dict | None:
    path = os.path.join(ckpt_dir, tag, f"rank{rank}.pt")
    if not os.path.exists(path):
        return None
    return torch.load(path, weights_only=True)
