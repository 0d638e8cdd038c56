"""A tiny substitute for the paper's image sets: an ImageFolder tree (train/ + val/) of 4 colour classes."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]


def write_image_folder(root, n_train: int = 16, n_val: int = 6, size: int = 40, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, colour in enumerate(COLOURS):
            d = os.path.join(root, split, f"class{c}")
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                img = np.clip(np.array(colour) + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(os.path.join(d, f"{i:03d}.png"))
    return str(root)


def tiny_overrides(images: str, data_root: str, run_dir: str) -> list[str]:
    """Shrink a paper recipe to the substitute: small random ViT, 32-pixel inputs, τ's for 64 images."""
    return [f"data.source={images}", f"data.root={data_root}", f"run_dir={run_dir}", "data.image_size=32",
            "data.batch_size=8", "data.eval_batch_size=16", "data.num_workers=0", "data.samples_per_shard=32",
            "method.backbone=vit_tiny_patch16_224", "method.backbone_kwargs={depth: 2}", "method.img_size=32",
            "method.pretrained_path=", "method.tau1=4", "method.tau2=24", "method.eta=0", "method.eta_quantile=0.6",
            "method.purity_ks=[1,2]", "method.mine_batch_size=16", "method.old_classes=[0,1]",
            "engine.progress=false", "engine.log_every=1"]
