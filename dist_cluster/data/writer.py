"""Write a `Source` into `{split}-%06d.tar` WebDataset shards plus a `{split}.json` manifest.

Shards hold one sample per key `%09d` (the global index) with members `<image ext>` or `npy`, `cls` and
`index`, plus `path` (the source file, relative to the manifest's `source.root`) for image folders. Shard
boundaries come from a sample count or a byte budget (sizes computed exactly, tar headers included). Shards
are written by several processes, each to a temporary name and renamed when complete, and are reproducible
byte for byte (fixed mtime), so a restarted run verifies finished shards by their sha256 (kept in
`{split}.json.partial` while writing) and writes only the rest.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os

from tqdm import tqdm
from webdataset import TarWriter
from webdataset.writer import default_handlers, encode_based_on_extension

from dist_cluster.data.manifest import Manifest, sha256_file

_BLOCK = 512
_RECORD = 20 * _BLOCK  # tarfile pads an archive to whole records


def tar_file_bytes(members_bytes: int) -> int:
    """Size of a tar holding members of these total bytes (end-of-archive blocks and record padding)."""
    return -(-(members_bytes + 2 * _BLOCK) // _RECORD) * _RECORD


def tar_member_bytes(payload: int) -> int:
    return _BLOCK + -(-payload // _BLOCK) * _BLOCK


def encoded_sample_bytes(sample: dict) -> int:
    enc = encode_based_on_extension({k: v for k, v in sample.items() if not k.startswith("__")}, default_handlers)
    return sum(tar_member_bytes(len(v)) for v in enc.values())


def write_tar(path: str, samples) -> tuple[int, str, int]:
    """Write samples (dicts with __key__) to `path` atomically; returns (count, sha256, bytes)."""
    tmp = f"{path}.tmp{os.getpid()}"
    n = 0
    with open(tmp, "wb") as f, TarWriter(f, mtime=0) as w:
        for s in samples:
            w.write(s)
            n += 1
    os.replace(tmp, path)
    return n, sha256_file(path), os.path.getsize(path)


def plan_shards(n: int, samples_per_shard: int = 0, max_bytes: int = 0, sizes=None) -> list[tuple[int, int]]:
    """[start, end) sample ranges per shard: fixed counts, or greedy packing under a byte budget."""
    if samples_per_shard > 0:
        return [(s, min(s + samples_per_shard, n)) for s in range(0, n, samples_per_shard)]
    if max_bytes <= 0 or sizes is None:
        raise ValueError("give samples_per_shard > 0 or max_bytes > 0")
    ranges, start, used = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and tar_file_bytes(used + size) > max_bytes:
            ranges.append((start, i))
            start, used = i, 0
        used += size
    if start < n:
        ranges.append((start, n))
    return ranges


_SOURCE = None  # the source, handed to pool workers once


def _init_worker(source) -> None:
    global _SOURCE
    _SOURCE = source


def _sample_bytes(i: int) -> int:
    return _SOURCE.sample_bytes(i)


def _write_one(job: tuple[str, int, int]) -> tuple[str, int, int, str, int]:
    path, start, end = job
    n, sha, nbytes = write_tar(path, (_SOURCE.sample(i) for i in range(start, end)))
    return os.path.basename(path), start, n, sha, nbytes


def _load_done(out_dir: str, split: str) -> dict[str, dict]:
    """Shards already finished by an earlier run: from the final manifest or the partial log."""
    done = {}
    final, partial = os.path.join(out_dir, f"{split}.json"), os.path.join(out_dir, f"{split}.json.partial")
    if os.path.exists(final):
        try:
            for s in Manifest.load(final).shards:
                done[s["url"]] = s
        except (ValueError, KeyError, json.JSONDecodeError):
            pass
    if os.path.exists(partial):
        with open(partial) as f:
            for line in f:
                try:
                    s = json.loads(line)
                    done[s["url"]] = s
                except json.JSONDecodeError:
                    pass  # a line cut by a kill
    return done


def write_shards(source, out_dir: str, split: str, *, samples_per_shard: int = 0, max_bytes: int = 0,
                 workers: int = 1, progress: bool = True) -> str:
    """Write `source` as shards under `out_dir`; returns the manifest path. Resumable (see module doc)."""
    os.makedirs(out_dir, exist_ok=True)
    n = len(source)
    pool = mp.get_context("fork").Pool(workers, _init_worker, (source,)) if workers > 1 else None
    try:
        if pool is None:
            _init_worker(source)
        sizes = None
        if samples_per_shard <= 0:
            sizes = (pool.map(_sample_bytes, range(n), chunksize=max(1, n // (8 * workers))) if pool
                     else [source.sample_bytes(i) for i in range(n)])
        ranges = plan_shards(n, samples_per_shard, max_bytes, sizes)
        done = _load_done(out_dir, split)
        entries: dict[int, dict] = {}
        jobs = []
        for k, (start, end) in enumerate(ranges):
            name = f"{split}-{k:06d}.tar"
            path = os.path.join(out_dir, name)
            prev = done.get(name)
            if (prev and prev.get("start", start) == start and prev["samples"] == end - start
                    and os.path.exists(path) and sha256_file(path) == prev["sha256"]):
                entries[k] = dict(prev, start=start)
            else:
                jobs.append((path, start, end))
        bar = tqdm(total=n, initial=n - sum(e - s for _, s, e in jobs), unit="img", desc=f"{split} shards",
                   disable=not progress)
        with open(os.path.join(out_dir, f"{split}.json.partial"), "a") as log:
            results = pool.imap_unordered(_write_one, jobs) if pool else map(_write_one, jobs)
            for name, start, count, sha, nbytes in results:
                entry = {"url": name, "samples": count, "sha256": sha, "bytes": nbytes, "start": start}
                entries[int(name[len(split) + 1:-4])] = entry
                log.write(json.dumps(entry) + "\n")
                log.flush()
                bar.update(count)
        bar.close()
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    manifest = Manifest(shards=[entries[k] for k in range(len(ranges))], split=split, kind=source.kind,
                        class_names=list(source.class_names), source=source.info, image=source.image_info,
                        feature_dim=getattr(source, "feature_dim", 0))
    path = os.path.join(out_dir, f"{split}.json")
    manifest.save(path)
    os.remove(os.path.join(out_dir, f"{split}.json.partial"))
    for k in range(len(ranges), len(ranges) + 10_000):  # shards of an older, longer plan
        stale = os.path.join(out_dir, f"{split}-{k:06d}.tar")
        if not os.path.exists(stale):
            break
        os.remove(stale)
    return path
