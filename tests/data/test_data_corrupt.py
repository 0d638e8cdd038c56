"""Bad data: a truncated shard and an undecodable sample are skipped, counted, and no rank falls behind."""
import logging
import os
import tarfile

import pytest
import torch
from data_fixtures import N, cfg, write_synthetic

from dist_cluster.data import Manifest, build_train_loader, load_feature_arrays
from dist_cluster.data.sampling import EpochPlan

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


def _member(path: str, name: str) -> tarfile.TarInfo:
    with tarfile.open(path) as tf:
        return tf.getmember(name)


def damage(out_dir: str) -> set[int]:
    """Garble sample 20's PNG (shard 1) and cut shard 3 inside sample 51's PNG; returns the unreadable indices."""
    m = Manifest.load(os.path.join(out_dir, "train.json"))
    png = _member(m.url(1), "000000020.png")
    with open(m.url(1), "r+b") as f:
        f.seek(png.offset_data)
        f.write(b"\0" * png.size)
    cut = _member(m.url(3), "000000051.png").offset_data + 10
    with open(m.url(3), "r+b") as f:
        f.truncate(cut)
    return {20} | set(range(51, 60))


def pipe_manifest(path: str) -> Manifest:
    """The same shards read through `pipe:cat`, as from an object store."""
    m = Manifest.load(path)
    m.shards = [dict(s, url=f"pipe:cat {m.url(k)}") for k, s in enumerate(m.shards)]
    return m


def test_corrupt_samples_are_skipped_and_counted(tmp_path, caplog):
    path = write_synthetic(str(tmp_path))
    bad = damage(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="dist_cluster.data"):
        loaders = [build_train_loader(cfg(num_workers=w), path, seed=7, rank=r, world_size=2)
                   for r, w in ((0, 0), (1, 2))]
        epochs = [list(L.epoch(0)) for L in loaders]
    assert len(epochs[0]) == len(epochs[1]) == N // 8  # nobody falls behind
    for batches in epochs:
        for b in batches:
            assert len(b["index"]) == 4 and not set(b["index"].tolist()) & bad
            assert b["label"].tolist() == [i % 10 for i in b["index"].tolist()]
    used = set(EpochPlan(N, 4, 7, 0, 2).permutation(0)[:N // 8 * 8].tolist())
    assert sum(int(b["_skipped"]) for bs in epochs for b in bs) == len(used & bad) > 0
    assert "skipping corrupt sample" in caplog.text


def test_streamed_corrupt_shard_is_skipped_and_counted(tmp_path):
    path = write_synthetic(str(tmp_path))
    bad = damage(str(tmp_path))
    m = pipe_manifest(path)
    loaders = [build_train_loader(cfg(num_workers=w), m, seed=7, rank=r, world_size=2) for r, w in ((0, 0), (1, 2))]
    epochs = [list(L.epoch(0)) for L in loaders]
    assert len(epochs[0]) == len(epochs[1]) == N // 8
    assert all(len(b["index"]) == 4 and not set(b["index"].tolist()) & bad for bs in epochs for b in bs)
    assert sum(int(b["_skipped"]) for bs in epochs for b in bs) >= 9  # at least the cut-off samples of shard 3


def test_feature_arrays_skip_a_truncated_shard(tmp_path):
    import numpy as np

    from dist_cluster.data.sources import FeatureSource
    from dist_cluster.data.writer import write_shards
    src = FeatureSource(np.arange(40 * 3, dtype=np.float32).reshape(40, 3), np.arange(40) % 4, list("abcd"), {})
    path = write_shards(src, str(tmp_path), "train", samples_per_shard=10, progress=False)
    m = Manifest.load(path)
    with open(m.url(2), "r+b") as f:
        f.truncate(_member(m.url(2), "000000025.npy").offset_data + 4)
    f, y, i = load_feature_arrays(path)
    assert i.tolist() == list(range(25)) + list(range(30, 40))
    assert torch.equal(f[:, 0], i.float() * 3)
