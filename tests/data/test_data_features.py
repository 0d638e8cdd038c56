"""Feature extraction: 2 ranks write exactly what 1 rank writes; the three backbone families load offline."""
import json
import os
import sys

import pytest
import torch
from dist_utils import run_world
from PIL import Image

from dist_cluster.data import Manifest, load_feature_arrays, prepare
from dist_cluster.data.config import DataConfig
from dist_cluster.data.features import extract_features, load_backbone
from dist_cluster.data.transforms import make_transform

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import extract_features as extract_cli  # noqa: E402

torch.set_num_threads(1)
KW = dict(backbone="efficientnet_lite0", image_size=32, batch_size=16, samples_per_shard=40, limit=90)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return prepare(DataConfig(name="digits", root=str(tmp_path_factory.mktemp("root"))))["train"]


def _extract(rank, world, images, out):
    return extract_features(images, out, "train", progress=False, **KW)


def test_two_ranks_write_what_one_rank_writes(digits, tmp_path):
    one = extract_features(digits, str(tmp_path / "one"), "train", rank=0, world_size=1, progress=False, **KW)
    two = run_world(_extract, 2, digits, str(tmp_path / "two"))[0]
    m1, m2 = Manifest.load(one), Manifest.load(two)
    assert [s["samples"] for s in m1.shards] == [40, 40, 10] and m1.feature_dim == 1280 and m1.kind == "feature"
    assert [s["sha256"] for s in m1.shards] == [s["sha256"] for s in m2.shards]  # byte-identical shards
    f1, y1, i1 = load_feature_arrays(one)
    f2, y2, i2 = load_feature_arrays(two)
    assert torch.equal(f1, f2) and torch.equal(y1, y2) and i1.tolist() == list(range(90))
    assert f1.std(0).mean() > 0  # real, varying features
    assert m1.source["backbone"] == "efficientnet_lite0" and m1.class_names == [str(c) for c in range(10)]


def test_interrupted_extraction_resumes_only_missing_shards(digits, tmp_path):
    out = str(tmp_path / "f")
    extract_features(digits, out, "train", rank=0, world_size=1, progress=False, **KW)
    keep = os.stat(os.path.join(out, "train-000000.tar")).st_mtime_ns
    os.remove(os.path.join(out, "train-000001.tar"))
    extract_features(digits, out, "train", rank=0, world_size=1, progress=False, **KW)
    assert os.stat(os.path.join(out, "train-000000.tar")).st_mtime_ns == keep
    assert Manifest.load(os.path.join(out, "train.json")).total == 90
    extract_features(digits, out, "train", rank=0, world_size=1, progress=False, **dict(KW, image_size=64))
    assert os.stat(os.path.join(out, "train-000000.tar")).st_mtime_ns != keep  # another job: redone


def test_pretrained_efficientnet_lite0_recognises_an_espresso():
    from skimage import data
    from timm.data import ImageNetInfo
    model, norm = load_backbone("efficientnet_lite0", 224)
    x = make_transform("eval", 224, mean=norm["mean"], std=norm["std"])(Image.fromarray(data.coffee()))[None]
    net = model.model
    with torch.no_grad():
        feat = model(x)
        logits = net._fc(feat)
    assert feat.shape == (1, 1280)
    assert ImageNetInfo().index_to_description(int(logits.argmax())) == "espresso"


def test_timm_backbone_via_cli(digits, tmp_path):
    extract_cli.main(["--images", digits, "--out", str(tmp_path), "--backbone", "timm:test_vit", "--image-size",
                      "32", "--limit", "30", "--samples-per-shard", "20", "--batch-size", "8", "--workers", "0"])
    f, y, i = load_feature_arrays(str(tmp_path / "train.json"))
    model, _ = load_backbone("timm:test_vit", 32)
    assert f.shape == (30, model.model.num_features) and i.tolist() == list(range(30))


def test_open_clip_backbone_from_a_local_config(digits, tmp_path):
    cfg = {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 500, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path / "dc-tiny-clip.json"
    path.write_text(json.dumps(cfg))
    model, norm = load_backbone(f"open_clip:{path}", 32)
    again, _ = load_backbone(f"open_clip:{path}", 32)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    out = extract_features(digits, str(tmp_path / "f"), "train", backbone=f"open_clip:{path}", image_size=32,
                           limit=12, samples_per_shard=12, rank=0, world_size=1, progress=False)
    f, _, _ = load_feature_arrays(out)
    assert f.shape == (12, 24) and norm["mean"][0] == pytest.approx(0.4815, abs=1e-3)
