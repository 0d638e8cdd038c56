"""Image transforms: timm's `create_transform` for the ImageNet protocol, and multi-view wrappers.

Single views (PIL image in, tensor out):
  plain   resize to S×S (no crop) + normalise — deterministic; feature extraction, PICI's test view
  eval    timm eval: resize to S/crop_pct, centre crop S (crop_pct, interpolation from config)
  train   timm train: RandomResizedCrop + flip + RandAugment (auto_augment) + random erasing (re_prob, pixel)
  weak    = plain (PICI's paper: "resize + normalise only")
  strong  SimCLR/BYOL view: RandomResizedCrop(scale), flip, ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8,
          grayscale p 0.2, Gaussian blur (kernel ~S/10, sigma 0.1-2) p 1.0
  strong_solarize   strong + solarize p 0.2 (BYOL's second view)
  mae     MAE pre-training view: RandomResizedCrop(scale 0.2-1, bicubic) + flip
Several views: names joined by "+" give a list of tensors (the batch's "views"); aliases
  two_strong = strong+strong_solarize (PICI reference code), weak_strong = weak+strong (PICI paper).
Grey/colour conversion to `in_chans` happens when decoding (dist_cluster.data.dataset); `image_size` 0 keeps
the native size, so small images are resized only when the config asks for it.
"""
from __future__ import annotations

from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, auto_augment, create_transform
from torchvision import transforms as T


def _posterize(img, bits_to_keep, **kw):
    """Pillow >= 12 rejects posterize(bits=0), which timm's PosterizeIncreasing reaches at magnitude 10 (m9
    plus mstd noise, so the FEC/DeiT recipe crashes at random); keeping 0 bits is a black image, as older
    Pillow computed it."""
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return _timm_posterize(img, bits_to_keep, **kw)


_timm_posterize = auto_augment.posterize
for _op in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
    if auto_augment.NAME_TO_OP.get(_op) is _timm_posterize:
        auto_augment.NAME_TO_OP[_op] = _posterize

ALIASES = {"two_strong": "strong+strong_solarize", "weak_strong": "weak+strong"}
SINGLE = ("plain", "eval", "train", "weak", "strong", "strong_solarize", "mae")


class MultiView:
    """Applies each view transform to the same image; returns the list of views."""

    def __init__(self, views: list):
        self.views = views

    def __call__(self, img):
        return [t(img) for t in self.views]

    def __repr__(self):
        return f"MultiView({self.views!r})"


def default_mean_std(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if in_chans == 3:
        return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)
    return (0.5,) * in_chans, (0.5,) * in_chans


def _strong(size: int, scale, interpolation: str, mean, std, solarize: float):
    primary, secondary, final = create_transform(
        size, is_training=True, scale=scale, hflip=0.5, color_jitter=(0.4, 0.4, 0.2, 0.1), color_jitter_prob=0.8,
        grayscale_prob=0.2, interpolation=interpolation, mean=mean, std=std, separate=True)
    kernel = max(3, (size // 10) | 1)  # odd, ~10% of the image as in SimCLR/BYOL (23 at 224)
    extra = [T.GaussianBlur(kernel, sigma=(0.1, 2.0))]
    if solarize > 0:
        extra.append(T.RandomSolarize(128, p=solarize))
    return T.Compose([primary, secondary, *extra, final])


def make_transform(name: str, image_size: int, in_chans: int = 3, *, mean=None, std=None,
                   crop_pct: float = 0.875, interpolation: str = "bicubic",
                   auto_augment: str = "rand-m9-mstd0.5-inc1", re_prob: float = 0.25,
                   scale: tuple[float, float] = (0.08, 1.0)):
    """A transform by name (see module doc); names joined with '+' give a MultiView."""
    name = ALIASES.get(name, name)
    if "+" in name:
        return MultiView([make_transform(n, image_size, in_chans, mean=mean, std=std, crop_pct=crop_pct,
                                         interpolation=interpolation, auto_augment=auto_augment,
                                         re_prob=re_prob, scale=scale) for n in name.split("+")])
    if name not in SINGLE:
        raise ValueError(f"unknown transform {name!r}; choose from {SINGLE + tuple(ALIASES)} or join with '+'")
    if image_size <= 0:
        raise ValueError("transforms need an image size (data.image_size or the manifest's native size)")
    d_mean, d_std = default_mean_std(in_chans)
    mean, std = tuple(mean or d_mean), tuple(std or d_std)
    size = (in_chans, image_size, image_size)
    if name in ("plain", "weak"):
        return create_transform(size, crop_pct=1.0, crop_mode="squash", interpolation=interpolation, mean=mean,
                                std=std)
    if name == "eval":
        return create_transform(size, crop_pct=crop_pct, interpolation=interpolation, mean=mean, std=std)
    if name == "train":
        return create_transform(size, is_training=True, scale=scale, auto_augment=auto_augment or None,
                                interpolation="random", re_prob=re_prob, re_mode="pixel", re_count=1,
                                mean=mean, std=std)
    if name == "mae":
        return create_transform(size, is_training=True, scale=(0.2, 1.0), color_jitter=None,
                                interpolation="bicubic", mean=mean, std=std)
    return _strong(image_size, scale, interpolation, mean, std, 0.2 if name == "strong_solarize" else 0.0)


def transform_from_config(cfg, name: str, native_size: int = 0):
    """`make_transform` with the DataConfig's settings; image size = cfg.image_size or the native size."""
    return make_transform(name, cfg.image_size or native_size, cfg.in_chans, mean=cfg.mean or None,
                          std=cfg.std or None, crop_pct=cfg.crop_pct, interpolation=cfg.interpolation,
                          auto_augment=cfg.auto_augment, re_prob=cfg.re_prob, scale=tuple(cfg.scale))
