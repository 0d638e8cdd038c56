"""Tiny substitute for ImageNet: an ImageFolder tree (train/ + val/) of photo crops, 3 classes."""
import os

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee")


def write_image_folder(root, train_per_class: int = 8, val_per_class: int = 4, size: int = 96, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(PHOTOS):
            photo = getattr(skimage.data, name)()
            d = os.path.join(root, split, f"class{c}_{name}")
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                y, x = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
                Image.fromarray(photo[y:y + size, x:x + size]).save(os.path.join(d, f"{i}.png"))
    return str(root)


def tiny_overrides(images: str, data_root: str, run_dir: str, image_size: int = 64, batch: int = 4) -> list[str]:
    return [f"data.source={images}", f"data.root={data_root}", f"data.image_size={image_size}",
            f"data.batch_size={batch}", "data.eval_batch_size=8", "data.num_workers=0", f"run_dir={run_dir}",
            "engine.progress=false", "engine.log_every=1", "method.figure_photos=[]"]
