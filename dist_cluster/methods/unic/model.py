"""UNIC's network: a backbone whose trunk is frozen and whose last block(s) train, plus the cluster head.

SPEC U2/U7-11: only the last ViT block (+ final norm) trains; blocks before it run under no_grad and in eval
mode, so activations are kept only for the trained tail. The embedding is the CLS token after the final norm
(timm's pre-logits), fed to the head unnormalised. EfficientNet-Lite0 (the CPU analogue of SPEC U8 (d))
trains its last stage + conv_head instead.
"""
from __future__ import annotations

import os
import warnings

import torch
from torch import nn


class SplitBackbone(nn.Module):
    """trunk(x) under no_grad (always eval mode) → tail(x) with gradients → (B, embed_dim) embedding."""

    def __init__(self, model: nn.Module, trunk, tail, embed_dim: int, trainable: list[nn.Module]):
        super().__init__()
        self.model, self._trunk, self._tail, self.embed_dim = model, trunk, tail, embed_dim
        self.model.requires_grad_(False)
        for m in trainable:
            m.requires_grad_(True)
        self.frozen = [m for m in self.model.modules() if not any(p.requires_grad for p in m.parameters())]

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.frozen:      # frozen parts never update BN statistics nor use dropout
            m.train(False)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self._trunk(x)
        return self._tail(h)


def _timm_model(name: str, pretrained_path: str, img_size: int, extra: dict | None = None) -> nn.Module:
    import timm
    kwargs = {"num_classes": 0, **(extra or {})}
    if img_size:
        kwargs["img_size"] = img_size
    if pretrained_path:     # timm loads (and adapts) the local file; nothing is downloaded
        if not os.path.isfile(pretrained_path):
            raise FileNotFoundError(f"method.pretrained_path={pretrained_path!r} does not exist (weights are never "
                                    "downloaded: stage the file first)")
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": pretrained_path})
    return timm.create_model(name, **kwargs)


def vit_backbone(name: str, pretrained_path: str = "", train_blocks: int = 1, train_final_norm: bool = True,
                 img_size: int = 0, model: nn.Module | None = None, **kwargs) -> SplitBackbone:
    """A timm VisionTransformer split before its last `train_blocks` blocks."""
    vit = model if model is not None else _timm_model(name, pretrained_path, img_size, kwargs)
    n_frozen = len(vit.blocks) - train_blocks

    def trunk(x):
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        return vit.blocks[:n_frozen](x)

    def tail(x):
        return vit.forward_head(vit.norm(vit.blocks[n_frozen:](x)), pre_logits=True)

    trainable = list(vit.blocks[n_frozen:]) + ([vit.norm, vit.fc_norm] if train_final_norm and train_blocks else [])
    return SplitBackbone(vit, trunk, tail, vit.num_features, trainable)


def efficientnet_lite0(train_blocks: int = 1, train_final_norm: bool = True, image_size: int = 224) -> SplitBackbone:
    """ImageNet EfficientNet-Lite0 from PyPI (the data layer's loader); tail = last stage(s) + conv_head/bn."""
    from dist_cluster.data.features import load_backbone
    net = load_backbone("efficientnet_lite0", image_size or 224)[0].model
    # A stage is a run of consecutive blocks with the same output width.
    widths = [b._block_args.output_filters for b in net._blocks]
    starts = [i for i, w in enumerate(widths) if i == 0 or w != widths[i - 1]]
    first_tail = starts[-train_blocks] if train_blocks else len(net._blocks)

    def trunk(x):
        x = net._swish(net._bn0(net._conv_stem(x)))
        for blk in net._blocks[:first_tail]:
            x = blk(x)
        return x

    def tail(x):
        for blk in net._blocks[first_tail:]:
            x = blk(x)
        x = net._swish(net._bn1(net._conv_head(x)))
        return net._avg_pooling(x).flatten(1)

    head = [net._conv_head, net._bn1] if train_final_norm and train_blocks else []
    trainable = list(net._blocks[first_tail:]) + head
    return SplitBackbone(net, trunk, tail, net._bn1.num_features, trainable)


def build_backbone(m) -> SplitBackbone:
    """From the UnicConfig section: EfficientNet-Lite0 from PyPI, or any timm ViT by name."""
    if m.backbone in ("efficientnet_lite0", "efficientnet-lite0"):
        return efficientnet_lite0(m.train_blocks, m.train_final_norm, m.img_size)
    if not m.pretrained_path:
        warnings.warn(f"{m.backbone}: no method.pretrained_path given, the backbone is randomly initialised")
    return vit_backbone(m.backbone, m.pretrained_path, m.train_blocks, m.train_final_norm, m.img_size,
                        **m.backbone_kwargs)


def build_head(in_dim: int, m) -> nn.Module:
    """SPEC U2: Linear(D, hidden) → act → Linear(hidden, K) ('mlp'), or Linear(D, K) ('linear')."""
    if m.head == "linear":
        return nn.Linear(in_dim, m.num_clusters)
    if m.head != "mlp":
        raise ValueError(f"method.head must be 'mlp' or 'linear', got {m.head!r}")
    from timm.layers import Mlp, get_act_layer
    return Mlp(in_dim, m.head_hidden, m.num_clusters, act_layer=get_act_layer(m.head_act))
