"""Shard writing, manifests, random access, the make_shards CLI and data-set sources."""
import os
import sys

import numpy as np
import pytest
import torch
from data_fixtures import SPP, N, cfg, index_of_pixels, synthetic_images, write_synthetic
from PIL import Image

from dist_cluster.data import Manifest, RandomAccessDataset, build_eval_loader, build_train_loader, load_feature_arrays
from dist_cluster.data.dataset import pil_to_float
from dist_cluster.data.manifest import sha256_file
from dist_cluster.data.sources import ArraySource, fmnist_source
from dist_cluster.data.writer import write_shards

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import make_shards  # noqa: E402

torch.set_num_threads(1)


def test_manifest_describes_the_shards(tmp_path):
    m = Manifest.load(write_synthetic(str(tmp_path), workers=2))
    assert [s["samples"] for s in m.shards] == [SPP] * 6 + [N - 6 * SPP]
    assert m.total == N and m.class_names == [str(c) for c in range(10)]
    assert m.source == {"name": "synthetic"} and m.image == {"size": [8, 8], "mode": "L"}
    for k, s in enumerate(m.shards):
        assert s["url"] == f"train-{k:06d}.tar"
        assert sha256_file(m.url(k)) == s["sha256"] and os.path.getsize(m.url(k)) == s["bytes"]
    assert not (tmp_path / "train.json.partial").exists()


def test_round_trip_every_sample_once_labels_intact(tmp_path):
    path = write_synthetic(str(tmp_path))
    loader = build_train_loader(cfg(batch_size=1), path, seed=3, rank=0, world_size=1, transform=pil_to_float)
    seen = []
    for b in loader.epoch(0):
        assert b["label"].tolist() == [i % 10 for i in b["index"].tolist()]
        assert index_of_pixels(b["image"]) == b["index"].tolist()  # decoded content is the right sample
        assert b["image"].shape == (1, 1, 8, 8) and b["_skipped"].item() == 0
        seen += b["index"].tolist()
    assert sorted(seen) == list(range(N))
    default = next(build_train_loader(cfg(), path, seed=3, rank=0, world_size=1).epoch(0))["image"]
    assert default.min() < -0.5 and default.max() > 0.5  # the default "plain" transform normalises
    evl = list(build_eval_loader(cfg(batch_size=10), path, rank=0, world_size=1, transform=pil_to_float))
    assert torch.cat([b["index"] for b in evl]).tolist() == list(range(N))
    imgs = np.concatenate([b["image"][:, 0].numpy() for b in evl])
    assert np.array_equal(np.round(imgs * 255).astype(np.uint8), synthetic_images())


def test_random_access_by_global_index(tmp_path):
    ds = RandomAccessDataset(write_synthetic(str(tmp_path)), in_chans=3)
    assert len(ds) == N
    for i in (0, 14, 15, 59, 102):
        s = ds[i]
        assert s["index"] == i and s["label"] == i % 10 and s["image"].shape == (3, 8, 8)
        assert round(float(s["image"][1, 0, 0]) * 255) == i  # grey replicated to 3 channels


def test_writer_resume_rewrites_only_damaged_or_missing_shards(tmp_path):
    path = write_synthetic(str(tmp_path))
    m = Manifest.load(path)
    shas = [s["sha256"] for s in m.shards]
    os.remove(m.url(2))
    with open(m.url(4), "r+b") as f:
        f.seek(700)
        f.write(b"garbage")
    before = {k: os.stat(m.url(k)).st_mtime_ns for k in (0, 1, 3, 5, 6)}
    write_synthetic(str(tmp_path))
    m2 = Manifest.load(path)
    assert [s["sha256"] for s in m2.shards] == shas  # byte-identical shards (fixed mtime)
    assert all(os.stat(m.url(k)).st_mtime_ns == t for k, t in before.items())  # verified, not rewritten
    assert sha256_file(m.url(4)) == shas[4] and sha256_file(m.url(2)) == shas[2]


def test_writer_byte_budget(tmp_path):
    src = ArraySource(synthetic_images(200, 16), np.zeros(200, int), ["a"], {"name": "x"})
    m = Manifest.load(write_shards(src, str(tmp_path), "train", max_bytes=60_000, workers=2, progress=False))
    assert len(m.shards) > 2 and m.total == 200
    assert all(s["bytes"] <= 60_000 for s in m.shards)
    assert m.shards[0]["bytes"] > 60_000 - 2 * 10240  # packed, not just split early


def test_missing_shard_is_an_error_naming_the_file(tmp_path):
    path = write_synthetic(str(tmp_path))
    os.remove(tmp_path / "train-000003.tar")
    for build in (lambda: build_train_loader(cfg(), path, seed=0, rank=0, world_size=1),
                  lambda: build_eval_loader(cfg(), path, rank=0, world_size=1),
                  lambda: RandomAccessDataset(path),
                  lambda: build_train_loader(cfg(), str(tmp_path / "train-{000000..000006}.tar"), seed=0, rank=0,
                                             world_size=1)):
        with pytest.raises(FileNotFoundError, match="train-000003.tar"):
            build()


def test_shard_pattern_without_manifest(tmp_path):
    write_synthetic(str(tmp_path))
    loader = build_train_loader(cfg(batch_size=103), str(tmp_path / "train-{000000..000006}.tar"), seed=0, rank=0,
                                world_size=1)
    (b,) = list(loader.epoch(0))
    assert sorted(b["index"].tolist()) == list(range(N)) and b["image"].shape == (N, 1, 8, 8)


def test_make_shards_cli_digits_and_features(tmp_path, capsys):
    make_shards.main(["digits", "--out", str(tmp_path / "d"), "--samples-per-shard", "500", "--workers", "2",
                      "--no-progress"])
    m = Manifest.load(str(tmp_path / "d" / "train.json"))
    assert m.total == 1797 and [s["samples"] for s in m.shards] == [500, 500, 500, 297]
    feats = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    np.savez(tmp_path / "f.npz", features=feats, labels=np.arange(50) % 3)
    make_shards.main(["features", "--path", str(tmp_path / "f.npz"), "--out", str(tmp_path / "f"),
                      "--samples-per-shard", "20", "--workers", "1", "--no-progress"])
    f, y, i = load_feature_arrays(str(tmp_path / "f" / "train.json"))
    assert torch.equal(f, torch.from_numpy(feats)) and y.tolist() == [k % 3 for k in range(50)]
    assert i.tolist() == list(range(50))
    assert Manifest.load(str(tmp_path / "f" / "train.json")).feature_dim == 6


def test_make_shards_imagefolder(tmp_path):
    root = tmp_path / "folder"
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for c, cls in enumerate(("cat", "dog")):
            (root / split / cls).mkdir(parents=True)
            for j in range(3 + c):
                Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(root / split / cls / f"{j}.png")
    make_shards.main(["imagefolder", "--path", str(root), "--out", str(tmp_path / "s"), "--max-bytes", "20000",
                      "--workers", "2", "--no-progress"])
    m = Manifest.load(str(tmp_path / "s" / "train.json"))
    assert m.total == 7 and m.class_names == ["cat", "dog"]
    ds = RandomAccessDataset(m)
    assert [ds[i]["label"] for i in range(7)] == [0, 0, 0, 1, 1, 1, 1]
    assert ds[4]["image"].shape == (3, 12, 10)
    assert Manifest.load(str(tmp_path / "s" / "eval.json")).total == 7


def test_fmnist_idx_source():
    src = fmnist_source("test")
    assert len(src) == 10_000 and src.images.shape == (10_000, 28, 28)
    assert sorted(set(src.labels.tolist())) == list(range(10)) and len(src.class_names) == 10


def test_header_scan_matches_tarfile_and_falls_back(tmp_path):
    import io
    import tarfile

    from dist_cluster.data.tarindex import ShardIndex, _ustar_members
    path = str(tmp_path / "x.tar")
    long_key = "deep/" * 25 + "k"  # > 100 characters: stored with the ustar prefix field
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in ((f"{long_key}.png", b"abc"), (f"{long_key}.cls", b"1"), ("b.cls", b"22")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    expected = list(ShardIndex._tarfile_members(path))
    assert _ustar_members(path, os.path.getsize(path)) == expected and expected[0][0] == f"{long_key}.png"
    with tarfile.open(str(tmp_path / "pax.tar"), "w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("é" * 120 + ".cls")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"3"))
    assert _ustar_members(str(tmp_path / "pax.tar"), os.path.getsize(tmp_path / "pax.tar")) is None
    assert len(ShardIndex(str(tmp_path / "pax.tar"))) == 1  # read through tarfile instead
