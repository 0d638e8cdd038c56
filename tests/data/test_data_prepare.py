"""prepare(): presets, idempotence, explicit manifests, ImageFolder trees, clear errors."""
import os

import numpy as np
import pytest
from PIL import Image

from dist_cluster.config import ConfigError, ExperimentConfig, apply_overrides
from dist_cluster.data import Manifest, load_feature_arrays, prepare
from dist_cluster.data.config import DataConfig


def test_presets_swap_the_data_section():
    cfg = apply_overrides(ExperimentConfig(), ["data=fmnist_effnet", "data.batch_size=64"])
    assert (cfg.data.name, cfg.data.backbone, cfg.data.image_size, cfg.data.batch_size) == (
        "fmnist_effnet", "efficientnet_lite0", 112, 64)
    for name in ("digits", "digits_pixels", "fmnist", "imagenet"):
        assert apply_overrides(ExperimentConfig(), [f"data={name}"]).data.name == name
    with pytest.raises(ConfigError, match="fmnist"):
        apply_overrides(ExperimentConfig(), ["data=fminst"])


def test_prepare_digits_once(tmp_path):
    cfg = DataConfig(name="digits", root=str(tmp_path))
    paths = prepare(cfg)
    assert paths["train"] == paths["eval"] == str(tmp_path / "digits" / "train.json")
    m = Manifest.load(paths["train"])
    assert m.total == 1797 and m.image == {"size": [8, 8], "mode": "L"}
    stamp = os.stat(m.url(0)).st_mtime_ns
    assert prepare(cfg) == paths and os.stat(m.url(0)).st_mtime_ns == stamp  # found, not rewritten
    f, y, _ = load_feature_arrays(prepare(DataConfig(name="digits_pixels", root=str(tmp_path)))["train"])
    assert f.shape == (1797, 64) and float(f.max()) == 16.0 and y[:3].tolist() == [0, 1, 2]


def test_explicit_manifests_win_and_errors_are_clear(tmp_path):
    assert prepare(DataConfig(train="a.json", eval="b.json")) == {"train": "a.json", "eval": "b.json"}
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        prepare(DataConfig(name="nope", root=str(tmp_path)))
    with pytest.raises(ValueError, match="data.source"):
        prepare(DataConfig(name="imagenet", root=str(tmp_path)))


def test_prepare_imagefolder_single_tree(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "tree" / cls).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(np.full((6, 6, 3), 40 * j, np.uint8)).save(tmp_path / "tree" / cls / f"{j}.jpg")
    paths = prepare(DataConfig(name="imagefolder", root=str(tmp_path / "out"), source=str(tmp_path / "tree")))
    assert paths["eval"] == paths["train"] and Manifest.load(paths["train"]).total == 4
