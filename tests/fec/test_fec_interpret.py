"""FEC segment pyramid (paper Eq. 8) on real photos, the K-Means merge, overlays and the command-line tool."""
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
import timm
import torch
from PIL import Image

import dist_cluster.models  # noqa: F401
from dist_cluster.interpret import (
    blocks_to_pixels,
    infer_variant,
    inspect_image,
    link_assignments,
    load_fec,
    prepare_image,
    save_segment_figure,
    segment_pyramid,
)

torch.set_num_threads(2)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_linking_by_hand():
    # 4 blocks → 2 clusters → 1 cluster; block b's chain is a2[a1[b]]
    a1, a2 = np.array([1, 0, 1, 1]), np.array([0, 0])
    lv = link_assignments([a1, a2])
    assert lv[0].tolist() == [1, 0, 1, 1] and lv[1].tolist() == [0, 0, 0, 0]
    pix = blocks_to_pixels(np.array([0, 1, 2, 3]), (2, 2), (4, 6))
    assert pix.tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [2, 2, 2, 3, 3, 3], [2, 2, 2, 3, 3, 3]]


def union_reference(assignments):
    """Eq. 8 as set unions, level by level: members[l+1][h] = ∪{members[l][o] : a_l[o] = h}."""
    members = {b: {b} for b in range(len(assignments[0]))}
    for a in assignments:
        nxt = {}
        for o, h in enumerate(a):
            nxt.setdefault(int(h), set()).update(members.get(o, set()))
        members = {h: m for h, m in nxt.items() if m}    # empty clusters dropped
    return members


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return timm.create_model("fec_small", num_classes=1000).eval()


@pytest.mark.parametrize("photo", ["astronaut", "chelsea"])
def test_pyramid_on_photos(model, photo, tmp_path):
    image = getattr(skimage.data, photo)()
    rgb, pyr, logits = inspect_image(model, image, size=224, k=8)
    assert rgb.shape == (224, 224, 3) and logits.shape == (1000,)
    assert [lab.shape for lab in pyr.levels] == [(224, 224)] * 3
    counts = [int(lab.max()) + 1 for lab in pyr.levels]
    assert counts[0] <= 784 and counts[1] <= 196 and counts[2] <= 49
    assert counts[0] >= counts[1] >= counts[2] >= 8
    for lab in pyr.levels + [pyr.merged]:      # a partition of every pixel, no empty ids
        assert np.array_equal(np.unique(lab), np.arange(lab.max() + 1))
    assert int(pyr.merged.max()) + 1 == 8
    for fine, coarse in zip(pyr.levels, pyr.levels[1:] + [pyr.merged]):   # nested: each segment inside one
        pairs = np.unique(np.stack([fine.ravel(), coarse.ravel()]), axis=1)
        assert pairs.shape[1] == int(fine.max()) + 1
    # the linked map equals set unions of the raw assignments
    x = torch.from_numpy(prepare_image(image, 224).astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        _, trace = model((x - 0.45) / 0.225, return_assignments=True)
    members = union_reference([a[0].numpy() for a in trace.assignments])
    final = segment_pyramid(trace, 0, (224, 224), median_size=1).levels[-1]
    blocks = final[::4, ::4].ravel()
    assert sorted(len(m) for m in members.values()) == sorted(np.bincount(blocks).tolist())
    for m in members.values():
        assert len(set(blocks[list(m)])) == 1
    out = save_segment_figure(rgb, pyr, str(tmp_path / f"{photo}.png"), photo)
    with Image.open(out) as im:
        assert im.size[0] > 1000 and im.size[1] > 300


def test_merge_feature_sources_and_k(model):
    image = skimage.data.coffee()
    _, by_r, _ = inspect_image(model, image, size=128, k=3)
    _, by_key, _ = inspect_image(model, image, size=128, k=5, features="key_centres")
    assert int(by_r.merged.max()) + 1 == 3 and int(by_key.merged.max()) + 1 == 5
    assert by_r.levels[-1].max() < 16


def test_load_fec_from_exported_and_wrapped_state_dicts(tmp_path):
    torch.manual_seed(1)
    net = timm.create_model("fec_small", num_classes=10).eval()
    plain = tmp_path / "plain.pt"
    torch.save(net.state_dict(), plain)
    wrapped = tmp_path / "wrapped.pt"   # a whole classification method: model + EMA copy
    ema = {f"ema.module.{k}": v + 1 if v.is_floating_point() else v for k, v in net.state_dict().items()}
    torch.save({f"model.{k}": v for k, v in net.state_dict().items()} | ema, wrapped)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_fec(str(plain))(x), net(x))
        assert torch.equal(load_fec(str(wrapped))(x), net(x))
        assert not torch.equal(load_fec(str(wrapped), ema=True)(x), net(x))
    assert load_fec(str(plain)).num_classes == 10


def test_load_fec_takes_the_blocks_per_stage_from_the_weights(tmp_path):
    # a run with method.depths: fewer blocks than its variant; fec_base and fec_large differ only in heads
    for name in ("fec_base", "fec_large"):
        net = timm.create_model(name, num_classes=4, depths=(1, 2, 1, 1)).eval()
        torch.save(net.state_dict(), tmp_path / "w.pt")
        assert infer_variant(net.state_dict()) == name
        got = load_fec(str(tmp_path / "w.pt"))
        assert [len(s.blocks) for s in got.stages] == [1, 2, 1, 1]
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(got(x), net(x))


def test_command_line_tool(tmp_path):
    torch.manual_seed(2)
    ckpt = tmp_path / "fec.pt"
    torch.save(timm.create_model("fec_small", num_classes=10).state_dict(), ckpt)
    photo = tmp_path / "cat.jpg"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    out = tmp_path / "seg.png"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools/fec_segments.py"), str(photo), "--checkpoint",
                          str(ckpt), "--out", str(out), "--size", "160", "--k", "4"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "merged to 4" in res.stdout and out.exists()
