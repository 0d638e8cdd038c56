"""Config of FEC classification (the ImageNet-1K protocol is recipes/common/fec.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal


@dataclass
class FecClassificationConfig:
    target: ClassVar[str] = "dist_cluster.methods.fec.method:FecClassification"
    model: str = "fec_small"           # any timm model name (fec_small/base/large; resnet18 for baselines)
    depths: tuple[int, ...] = ()       # blocks per stage; () = the model's own (e.g. (1, 1, 1, 1) for a quick trial)
    num_classes: int = 0               # 0 = the number of classes in the training manifest
    epochs: int = 310                  # scheduled epochs, cooldown included (reference: 300 + 10)
    drop_path: float = 0.1             # reference script (Small); not given for Base/Large
    drop_rate: float = 0.0
    # FEC only: argmax on M (paper) | "refined" σ(β+αM) (reference code)
    assign_on: Literal["sim", "refined"] = "sim"
    # FEC only: unweighted Eq. 6 (paper) | "sim" (CoC; trains the pool keys)
    agg_weight: Literal["none", "sim"] = "none"
    mixup: float = 0.8                 # Mixup alpha (0 and cutmix 0 = off)
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: Literal["batch", "pair", "elem"] = "batch"
    smoothing: float = 0.1
    ema: bool = True                   # the paper uses EMA; decay from the reference code
    ema_decay: float = 0.9998
    grad_checkpointing: bool = False
    figure_photos: tuple[str, ...] = ("astronaut", "chelsea")   # skimage.data photos segmented at the end
    figure_size: int = 224
