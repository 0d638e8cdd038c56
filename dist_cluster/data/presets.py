"""DataConfig presets, so `data=fmnist` (or any other name here) swaps the whole data section."""
from __future__ import annotations

from dist_cluster.config.overrides import register_preset
from dist_cluster.data.config import DataConfig


@register_preset(DataConfig, "digits")
def digits() -> DataConfig:
    return DataConfig(name="digits", batch_size=128, eval_batch_size=512)


@register_preset(DataConfig, "digits_pixels")
def digits_pixels() -> DataConfig:
    return DataConfig(name="digits_pixels", batch_size=128, eval_batch_size=512)


@register_preset(DataConfig, "fmnist")
def fmnist() -> DataConfig:
    return DataConfig(name="fmnist", batch_size=128, eval_batch_size=512)


@register_preset(DataConfig, "fmnist_effnet")
def fmnist_effnet() -> DataConfig:
    # 28-px images upsampled 4×: a quarter of the 224-px cost (~20 min for 70k images on 2 CPU cores);
    # data.image_size=224 for the backbone's native resolution where a GPU makes that cheap
    return DataConfig(name="fmnist_effnet", backbone="efficientnet_lite0", image_size=112, batch_size=256,
                      eval_batch_size=1024)


@register_preset(DataConfig, "imagenet")
def imagenet() -> DataConfig:
    # data.source=<ImageFolder root with train/ and val/> shards it once; or data.train/data.eval=<manifests>
    return DataConfig(name="imagenet", image_size=224, batch_size=256, eval_batch_size=256, num_workers=8,
                      samples_per_shard=1250, crop_pct=0.9)
