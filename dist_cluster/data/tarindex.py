"""Random access into local WebDataset tar shards by (shard, position) through a member-offset index.

The index of a shard is built lazily (headers only, with the stdlib tarfile reader) and kept in compact
arrays. A truncated or damaged shard keeps the samples before the damage; everything after it raises
`CorruptSample`, which the dataset turns into a counted skip.
"""
from __future__ import annotations

import logging
import os
import tarfile
from collections import OrderedDict

import numpy as np
from webdataset.tariterators import base_plus_ext

log = logging.getLogger("dist_cluster.data")
_HEADER = 512
_ZERO_BLOCK = bytes(_HEADER)


class CorruptSample(Exception):
    """A sample that cannot be read or decoded."""


def _ustar_members(path: str, file_size: int) -> list[tuple[str, int, int]] | None:
    """(name, data offset, size) of a plain ustar archive's regular files, reading headers only.

    Python's tarfile spends ~0.1 ms a header (checksums, every field decoded); this reads the two fields an
    index needs. Anything unusual (pax or GNU headers, links, a bad size field, a cut header) returns None
    and the caller falls back to tarfile, which handles all of it.
    """
    out, offset = [], 0
    with open(path, "rb") as f:
        while offset + _HEADER <= file_size:
            f.seek(offset)
            h = f.read(_HEADER)
            if h == _ZERO_BLOCK:
                return out
            if len(h) < _HEADER or h[257:262] != b"ustar" or h[156:157] not in (b"0", b"\0", b"5"):
                return None
            try:
                size = int(h[124:136].strip(b"\0 ") or b"0", 8)
            except ValueError:
                return None
            if h[156:157] != b"5":
                name, prefix = h[:100].rstrip(b"\0"), h[345:500].rstrip(b"\0")
                out.append(((prefix + b"/" + name if prefix else name).decode(), offset + _HEADER, size))
            offset += _HEADER + -(-size // _HEADER) * _HEADER
    return None  # no end-of-archive blocks: truncated


class ShardIndex:
    """Member offsets of one tar file, grouped into samples by key (webdataset convention).

    Kept compact (numpy arrays, extension codes), since every worker indexes every shard it touches:
    about 40 bytes a sample, 50 MB per worker for ImageNet-1k.
    """

    def __init__(self, path: str):
        self.path = path
        self.damaged = ""
        file_size = os.path.getsize(path)
        offsets, sizes, codes, starts, keys = [], [], [], [], []
        vocab: dict[str, int] = {}
        try:
            for name, offset, size in _ustar_members(path, file_size) or self._tarfile_members(path):
                key, ext = base_plus_ext(name)
                if key is None:
                    continue
                if not keys or keys[-1] != key:
                    keys.append(key)
                    starts.append(len(offsets))
                offsets.append(offset)
                sizes.append(size)
                codes.append(vocab.setdefault(ext.lower(), len(vocab)))
        except (tarfile.TarError, EOFError, OSError) as e:
            self.damaged = f"{type(e).__name__}: {e}"
            log.warning("shard %s is damaged after %d samples (%s); the rest is skipped", path, len(keys),
                        self.damaged)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.codes = np.asarray(codes, dtype=np.int16)
        self.vocab = list(vocab)
        self.starts = np.asarray(starts + [len(offsets)], dtype=np.int64)
        self.keys = np.asarray([k.encode() for k in keys], dtype=np.bytes_)
        if len(offsets) and int((self.offsets + self.sizes).max()) > file_size and not self.damaged:
            self.damaged = "data past end of file"

    @staticmethod
    def _tarfile_members(path: str):
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if m.isreg():
                    yield m.name, m.offset_data, m.size

    @property
    def exts(self) -> list[str]:
        return [self.vocab[c] for c in self.codes]

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, j: int, f) -> dict:
        """Raw sample j: {"__key__": key, ext: bytes, ...}."""
        if j >= len(self.keys):
            raise CorruptSample(f"{self.path}: sample {j} missing ({len(self.keys)} readable; {self.damaged})")
        sample = {"__key__": self.keys[j].decode()}
        for m in range(self.starts[j], self.starts[j + 1]):
            f.seek(int(self.offsets[m]))
            data = f.read(int(self.sizes[m]))
            if len(data) != self.sizes[m]:
                raise CorruptSample(f"{self.path}: sample {j} ({sample['__key__']}) is truncated")
            sample[self.vocab[self.codes[m]]] = data
        return sample


class ShardReader:
    """Reads samples from many local shards; keeps indices and a few open files per process."""

    def __init__(self, paths: list[str], max_open: int = 16):
        self.paths = paths
        self.max_open = max_open
        self._index: dict[int, ShardIndex] = {}
        self._files: OrderedDict[int, object] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self):  # worker processes start with empty caches and no open files
        return {"paths": self.paths, "max_open": self.max_open}

    def __setstate__(self, state):
        self.__init__(state["paths"], state["max_open"])

    def index(self, k: int) -> ShardIndex:
        if k not in self._index:
            self._index[k] = ShardIndex(self.paths[k])
        return self._index[k]

    def _file(self, k: int):
        if self._pid != os.getpid():  # a forked worker must not share the parent's file offsets
            self._files, self._pid = OrderedDict(), os.getpid()
        f = self._files.pop(k, None)
        if f is None:
            f = open(self.paths[k], "rb")
            if len(self._files) >= self.max_open:
                self._files.popitem(last=False)[1].close()
        self._files[k] = f
        return f

    def read(self, k: int, j: int) -> dict:
        try:
            return self.index(k).read(j, self._file(k))
        except OSError as e:
            raise CorruptSample(f"{self.paths[k]}: {e}") from e
