"""File lists with sizes and sha256 for a tag's COMPLETE marker, and the check of a tag against its list."""
from __future__ import annotations

import hashlib
import json
import os

from dist_cluster.checkpoint.layout import MARKER, read_meta
from dist_cluster.distributed import broadcast_object, gather_object_to


def marker_digest(meta: dict) -> str:
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


def list_files(path: str) -> list[tuple[str, int]]:
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
    listing = broadcast_object(list_files(path) if rank == 0 else None)
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
    if meta.get("marker_sha256") != marker_digest(meta) or not isinstance(meta.get("files"), dict):
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
