"""The JSON manifest that describes one split's shards.

Layout (written by `dist_cluster.data.writer`, read everywhere else):
    {"format": "dist_cluster.shards/1", "split": "train", "kind": "image" | "feature",
     "total": N, "class_names": [...], "source": {...}, "image": {"size": [H, W], "mode": "L"},
     "feature_dim": D, "shards": [{"url": "train-000000.tar", "samples": n, "sha256": "...", "bytes": b}, ...]}
A shard url is relative to the manifest's folder unless it is absolute or has a scheme (`pipe:`, `http://`,
`s3://`, ...). The global index of a sample is its position in manifest order (shard order, then position
inside the shard); every loader, feature file and evaluation uses that index.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from itertools import accumulate

from dist_cluster.errors import DataError

FORMAT = "dist_cluster.shards/1"
_REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def is_remote(url: str) -> bool:
    """True for `pipe:...`, `http://...` and other scheme URLs that webdataset opens (not local paths)."""
    return bool(_REMOTE.match(url)) and not url.startswith("file:")


def local_path(url: str) -> str:
    return url[len("file:"):] if url.startswith("file:") else url


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Manifest:
    shards: list[dict]
    split: str = "train"
    kind: str = "image"
    class_names: list[str] = field(default_factory=list)
    source: dict = field(default_factory=dict)
    image: dict = field(default_factory=dict)
    feature_dim: int = 0
    path: str = ""                 # where it was loaded from (shard urls resolve against its folder)

    def __post_init__(self):
        self.offsets = [0] + list(accumulate(int(s["samples"]) for s in self.shards))

    @property
    def total(self) -> int:
        return self.offsets[-1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def raw(self) -> dict:
        """The manifest as its JSON dict."""
        return self.to_json()

    def url(self, k: int) -> str:
        u = self.shards[k]["url"]
        if is_remote(u) or os.path.isabs(local_path(u)) or not self.path:
            return u
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), u)

    def urls(self) -> list[str]:
        return [self.url(k) for k in range(len(self.shards))]

    def locate(self, index: int) -> tuple[int, int]:
        """Global sample index -> (shard number, position inside the shard)."""
        if not 0 <= index < self.total:
            raise IndexError(f"sample index {index} out of range [0, {self.total})")
        k = bisect.bisect_right(self.offsets, index) - 1
        return k, index - self.offsets[k]

    def is_local(self) -> bool:
        return not any(is_remote(u) for u in self.urls())

    def check_files(self) -> None:
        """A missing local shard is an error at build time that names the file."""
        for u in self.urls():
            if not is_remote(u) and not os.path.isfile(local_path(u)):
                raise FileNotFoundError(f"shard file missing: {local_path(u)} (listed in {self.path or 'manifest'})")

    def to_json(self) -> dict:
        return {"format": FORMAT, "split": self.split, "kind": self.kind, "total": self.total,
                "class_names": self.class_names, "source": self.source, "image": self.image,
                "feature_dim": self.feature_dim, "shards": self.shards}

    def save(self, path: str) -> None:
        """Atomic write: a reader never sees a half-written manifest."""
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=1)
        os.replace(tmp, path)
        self.path = path

    @classmethod
    def load(cls, path: str) -> "Manifest":
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise OSError(f"manifest {path} cannot be read: {e.strerror or e}") from None
        if not text.strip():
            raise DataError(f"manifest {path} is empty (0 bytes); rewrite it with tools/make_shards.py")
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"manifest {path} is not valid JSON ({e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            d = d if isinstance(d, dict) else {}
            raise DataError(f"{path}: not a dist_cluster shard manifest (format {d.get('format')!r})")
        m = cls(shards=d["shards"], split=d.get("split", ""), kind=d.get("kind", "image"),
                class_names=d.get("class_names", []), source=d.get("source", {}), image=d.get("image", {}),
                feature_dim=int(d.get("feature_dim", 0)), path=path)
        if "total" in d and int(d["total"]) != m.total:
            raise DataError(f"{path}: total {d['total']} != sum of shard sample counts {m.total}")
        if m.total == 0:
            raise DataError(f"manifest {path} lists no samples ({len(m.shards)} shards)")
        return m
