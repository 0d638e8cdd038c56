"""One call from a photo to its FEC segment pyramid (and the model's prediction)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from dist_cluster.interpret.segments import SegmentPyramid, segment_pyramid


def prepare_image(image: np.ndarray | Image.Image, size: int, in_chans: int = 3) -> np.ndarray:
    """Resize to size×size (no aspect preservation, as the reference visualiser), as uint8 RGB or grey."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    img = img.convert("RGB" if in_chans == 3 else "L").resize((size, size), Image.BICUBIC)
    return np.asarray(img)


@torch.no_grad()
def inspect_image(model, image, size: int = 224, k: int = 8, features: str = "values", median_size: int = 5,
                  seed: int = 0, mean=None, std=None) -> tuple[np.ndarray, SegmentPyramid, torch.Tensor]:
    """Returns (the resized uint8 image, its SegmentPyramid, the logits). mean/std default to the model's."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    in_chans = getattr(model, "in_chans", 3)
    pixels = prepare_image(image, size, in_chans)
    x = torch.from_numpy(pixels.astype(np.float32) / 255)
    x = x.permute(2, 0, 1) if x.ndim == 3 else x.unsqueeze(0)
    mean = torch.tensor(tuple(mean or cfg.get("mean", (0.485, 0.456, 0.406)))[:in_chans]).view(-1, 1, 1)
    std = torch.tensor(tuple(std or cfg.get("std", (0.229, 0.224, 0.225)))[:in_chans]).view(-1, 1, 1)
    param = next(model.parameters())
    x = ((x - mean) / std).unsqueeze(0).to(param.device, param.dtype)
    model.eval()
    logits, trace = model(x, return_assignments=True)
    pyramid = segment_pyramid(trace, 0, (size, size), k=k, features=features, median_size=median_size, seed=seed)
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
    return rgb, pyramid, logits[0].float().cpu()
