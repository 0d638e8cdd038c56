"""Transforms: timm's ImageNet protocol, multi-view wrappers, grey/colour channels, resizing by config."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from dist_cluster.data.config import DataConfig
from dist_cluster.data.sampling import seeded_rng
from dist_cluster.data.transforms import MultiView, make_transform, transform_from_config

torch.set_num_threads(1)
GREY = Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8), "L")
RGB = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 30, 3), dtype=np.uint8), "RGB")


def _flat(t):
    out = []
    for x in getattr(t, "transforms", [t]):
        out += _flat(x) if isinstance(x, T.Compose) else [x]
    return out


@pytest.mark.parametrize("name", ["plain", "eval", "train", "weak", "strong", "strong_solarize", "mae"])
def test_single_views_shape(name):
    for img, chans in ((RGB, 3), (GREY, 1)):
        x = make_transform(name, 32, chans)(img)
        assert x.shape == (chans, 32, 32) and x.dtype == torch.float32


def test_multi_view_names_and_aliases():
    t = make_transform("two_strong", 16, 3)
    assert isinstance(t, MultiView) and len(t.views) == 2
    with seeded_rng(5):
        a, b = t(RGB)
    assert a.shape == b.shape == (3, 16, 16) and not torch.equal(a, b)
    weak, strong = make_transform("weak_strong", 16, 3)(RGB)
    assert torch.equal(weak, make_transform("plain", 16, 3)(RGB))  # the weak view is deterministic
    assert len(make_transform("weak+strong+mae", 16, 3)(RGB)) == 3
    with pytest.raises(ValueError, match="unknown transform"):
        make_transform("fancy", 16)


def test_imagenet_protocol_parts():
    train = [type(x).__name__ for x in _flat(make_transform("train", 224, 3, re_prob=0.25))]
    assert {"RandomResizedCropAndInterpolation", "RandAugment", "RandomErasing"} <= set(train)
    ev = _flat(make_transform("eval", 224, 3, crop_pct=0.9))
    assert ev[0].size == int(224 / 0.9) and ev[1].size == (224, 224)  # resize, then centre crop
    plain = _flat(make_transform("plain", 224, 3))
    assert type(plain[0]).__name__ == "Resize" and tuple(plain[0].size) == (224, 224)
    solar = [type(x).__name__ for x in _flat(make_transform("strong_solarize", 224, 3))]
    assert "RandomSolarize" in solar and "GaussianBlur" in solar


def test_seeded_views_repeat_and_small_images_upscale():
    t = make_transform("train", 8, 1)
    with seeded_rng(11):
        a = t(GREY.resize((8, 8)))
    with seeded_rng(11):
        b = t(GREY.resize((8, 8)))
    assert torch.equal(a, b)
    cfg = DataConfig(image_size=64, in_chans=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = transform_from_config(cfg, "plain", native_size=28)(GREY.convert("RGB"))
    assert x.shape == (3, 64, 64) and float(x.min()) >= -2.0 - 1e-6  # (0 - 0.5) / 0.25
    assert transform_from_config(DataConfig(in_chans=1), "plain", native_size=28)(GREY).shape == (1, 28, 28)
    with pytest.raises(ValueError, match="image size"):
        make_transform("plain", 0)


def test_randaugment_posterize_at_full_magnitude_does_not_crash():
    from timm.data.auto_augment import AugmentOp
    img = RGB.copy()
    op = AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10)  # keeps 0 bits
    assert not np.asarray(op(img)).any()
    t = make_transform("train", 16, 3, auto_augment="rand-m10-n6-mstd0-inc1")  # posterize drawn often
    for s in range(30):
        with seeded_rng(s):
            assert t(RGB).shape == (3, 16, 16)
