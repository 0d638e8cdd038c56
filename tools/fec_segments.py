"""Segment a photo with FEC: the linked ClusterPool assignments (paper Eq. 8) and their K-Means merge.

    python tools/fec_segments.py photo.jpg [--checkpoint CKPT] [--model fec_small] [--out segments.png]

CKPT: an exported state_dict, a recipe's run directory or DeepSpeed checkpoint directory, or the reference
implementation's checkpoint. Without it the model is randomly initialised (segments then follow colour and
position only). IMAGE may also be `skimage:NAME` for a bundled photo (e.g. skimage:astronaut).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import dist_cluster.models  # noqa: E402,F401
from dist_cluster.interpret import FEATURE_SOURCES, inspect_image, load_fec, save_segment_figure  # noqa: E402


def read_image(spec: str) -> np.ndarray:
    if spec.startswith("skimage:"):
        import skimage.data
        return getattr(skimage.data, spec.split(":", 1)[1])()
    return np.asarray(Image.open(spec).convert("RGB"))


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image")
    p.add_argument("--checkpoint", default="", help="weights (file, run dir or DeepSpeed checkpoint dir)")
    p.add_argument("--model", default="", help="fec_small | fec_base | fec_large (default: from the weights)")
    p.add_argument("--out", default="", help="PNG path (default: <image name>_segments.png)")
    p.add_argument("--size", type=int, default=224, help="input side, a multiple of 32")
    p.add_argument("--k", type=int, default=8, help="K-Means clusters for the merged map (paper: sklearn's 8)")
    p.add_argument("--features", default="values", choices=FEATURE_SOURCES,
                   help="what K-Means clusters: R of Eq. 6 (paper) or the last pool's key centres (reference)")
    p.add_argument("--median", type=int, default=5, help="median filter size for display (1 = off)")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    model = load_fec(args.checkpoint, args.model, ema=args.ema) if args.checkpoint else \
        timm.create_model(args.model or "fec_small", pretrained=False).eval()
    image, pyramid, logits = inspect_image(model, read_image(args.image), args.size, args.k, args.features,
                                           args.median, args.seed)
    name = os.path.splitext(os.path.basename(args.image.split(":")[-1]))[0]
    out = args.out or f"{name}_segments.png"
    sizes = " → ".join(str(int(lab.max()) + 1) for lab in pyramid.levels)
    title = f"{name}: {type(model).__name__} segments {sizes}, merged to {int(pyramid.merged.max()) + 1}" + \
        (f", predicted class {int(logits.argmax())}" if logits.numel() > 1 else "")
    save_segment_figure(image, pyramid, out, title)
    print(f"{title}\nwrote {out}")
    return out


if __name__ == "__main__":
    main()
