"""FEC backbone (feature extraction with clustering): four stages at strides 4/8/16/32 whose token mixing and
down-sampling are hard clustering. Registered with timm as fec_small / fec_base / fec_large.

    model = timm.create_model("fec_small", num_classes=10)
    logits, trace = model(x, return_assignments=True)   # trace.pools[l]: a PoolTrace per ClusterPool
    feats = timm.create_model("fec_small", features_only=True)(x)   # 4 stage maps, each GroupNorm'ed
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import GroupNorm1, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from dist_cluster.models.fec_layers import ClusterPool, FecBlock, PoolTrace


@dataclass
class ClusterTrace:
    pools: list[PoolTrace]        # pool 1→2, 2→3, 3→4 (fewer if the model was pruned)

    @property
    def assignments(self) -> list[torch.Tensor]:
        return [p.assignments for p in self.pools]


class FecStage(nn.Module):
    def __init__(self, in_dim: int, dim: int, depth: int, drop_paths: list[float], agg_weight: str, **block):
        super().__init__()
        self.downsample = ClusterPool(in_dim, dim, agg_weight) if in_dim else None
        self.blocks = nn.Sequential(*[FecBlock(dim, drop_path=dp, agg_weight=agg_weight, **block)
                                      for dp in drop_paths[:depth]])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, trace: list | None = None) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x, trace)
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(self.blocks, x, use_reentrant=False)
        return self.blocks(x)


class FEC(nn.Module):
    def __init__(self, depths=(3, 4, 5, 2), dims=(32, 64, 196, 320), mlp_ratios=(8, 8, 4, 4), heads=(4, 4, 8, 8),
                 head_dim=24, centres=(4, 4, 2, 2), num_classes: int = 1000, in_chans: int = 3,
                 global_pool: str = "avg", drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 ls_init: float = 1e-5, assign_on: str = "sim", agg_weight: str = "none",
                 dense_norms: bool = False):
        super().__init__()
        self.num_classes, self.in_chans, self.global_pool = num_classes, in_chans, global_pool
        self.num_features = self.head_hidden_size = dims[-1]
        self.patch_embed = nn.Conv2d(in_chans + 2, dims[0], kernel_size=4, stride=4)  # + row/col planes
        total = sum(depths)
        dpr = [drop_path_rate * j / max(total - 1, 1) for j in range(total)]
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.stages.append(FecStage(dims[i - 1] if i else 0, dims[i], depth, dpr[start:start + depth],
                                        agg_weight, mlp_ratio=mlp_ratios[i], heads=heads[i], head_dim=head_dim,
                                        centres=centres[i], ls_init=ls_init, assign_on=assign_on))
        self.feature_info = [dict(num_chs=d, reduction=4 * 2 ** i, module=f"stages.{i}") for i, d in enumerate(dims)]
        # the reference code's dense-task outputs pass each stage map through its own GroupNorm
        self.dense_norms = nn.ModuleList([GroupNorm1(d) for d in dims]) if dense_norms else None
        self.norm = GroupNorm1(dims[-1])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_linear)

    @staticmethod
    def _init_linear(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The stem: a 4×4/4 conv of the image and its row/col planes. The planes' share is the same for every
        image, so it is one (C, H/4, W/4) bias from the plane part of the weights (no 5-channel input)."""
        b, c, h, w = x.shape
        if h % 32 or w % 32:
            raise ValueError(f"FEC needs height and width divisible by 32 (every pool halves exactly), got {h}x{w}")
        weight = self.patch_embed.weight
        out = F.conv2d(x, weight[:, :c], self.patch_embed.bias, stride=4)
        # channels-first from here on, whatever layout the batch came in
        return (out + self.position_bias(h, w, weight[:, c:])).contiguous()

    @staticmethod
    def position_bias(h: int, w: int, weight: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(h, device=weight.device, dtype=weight.dtype) / (h - 1) - 0.5
        cols = torch.arange(w, device=weight.device, dtype=weight.dtype) / (w - 1) - 0.5
        pos = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).unsqueeze(0)
        return F.conv2d(pos, weight, stride=4)

    def forward_features(self, x: torch.Tensor, trace: list | None = None) -> torch.Tensor:
        x = self.embed(x)
        for stage in self.stages:
            x = stage(x, trace)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3)) if self.global_pool == "avg" else x.flatten(1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor, return_assignments: bool = False):
        trace = [] if return_assignments else None
        logits = self.forward_head(self.forward_features(x, trace))
        return (logits, ClusterTrace(trace)) if return_assignments else logits

    def forward_intermediates(self, x, indices=None, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False):
        assert output_fmt == "NCHW", "FEC returns NCHW maps"
        take, max_index = feature_take_indices(len(self.stages), indices)
        x = self.embed(x)
        out = []
        for i, stage in enumerate(self.stages[:max_index + 1] if stop_early else self.stages):
            x = stage(x)
            if i in take:
                out.append(self.dense_norms[i](x) if norm and self.dense_norms is not None else x)
        if intermediates_only:
            return out
        return self.norm(x), out

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True):
        take, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[:max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.global_pool = global_pool if global_pool is not None else self.global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_linear)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for s in self.stages:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False):
        return dict(stem=r"^patch_embed", blocks=r"^stages\.(\d+)" if coarse else
                    [(r"^stages\.(\d+)\.downsample", (0,)), (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                     (r"^norm", (99999,))])


_REFERENCE_RENAMES = [  # authors' code layout → this module's
    (r"^patch_embed\.proj\.", "patch_embed."),
    (r"^network\.(\d+)\.(\d+)\.layer_scale_(\d)$", lambda m: f"network.{m[1]}.{m[2]}.ls{m[3]}.gamma"),
    (r"^network\.(\d+)\.norm2\.", lambda m: f"network.{m[1]}.norm.") ,
]


def checkpoint_filter_fn(state_dict: dict, model: FEC | None = None) -> dict:
    """Accept the reference implementation's state_dict (network.{2i} = stage i, network.{2i+1} = pool)."""
    state_dict = state_dict.get("state_dict_ema", state_dict.get("state_dict", state_dict.get("model", state_dict)))
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in _REFERENCE_RENAMES:
            key = re.sub(pattern, repl, key)
        m = re.match(r"^network\.(\d+)\.(.*)$", key)
        if m:
            i, rest = int(m[1]), m[2]
            is_pool = rest.startswith(("conv_", "norm."))
            key = f"stages.{i // 2 + 1}.downsample.{rest}" if is_pool else f"stages.{i // 2}.blocks.{rest}"
        m = re.match(r"^norm(\d+)\.(.*)$", key)
        if m:
            key = f"dense_norms.{int(m[1]) // 2}.{m[2]}"
        out[key] = value
    return out


def _cfg(**kwargs) -> dict:
    return dict(url="", num_classes=1000, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.9,
                interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                first_conv="patch_embed", classifier="head", license="mit", **kwargs)


default_cfgs = generate_default_cfgs({"fec_small": _cfg(), "fec_base": _cfg(), "fec_large": _cfg()})

MODEL_ARGS = {
    "fec_small": dict(depths=(3, 4, 5, 2), dims=(32, 64, 196, 320), heads=(4, 4, 8, 8), head_dim=24),
    "fec_base": dict(depths=(2, 2, 6, 2), dims=(64, 128, 320, 512), heads=(4, 4, 8, 8), head_dim=32),
    "fec_large": dict(depths=(4, 4, 12, 4), dims=(64, 128, 320, 512), heads=(6, 6, 12, 12), head_dim=32),
}


def _create(variant: str, pretrained: bool = False, **kwargs) -> FEC:
    features = kwargs.get("features_only", False)
    if features:
        kwargs.setdefault("dense_norms", True)
    feature_cfg = dict(feature_cls="getter", out_indices=(0, 1, 2, 3), norm=kwargs.get("dense_norms", False))
    return build_model_with_cfg(FEC, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=feature_cfg, **dict(MODEL_ARGS[variant], **kwargs))


@register_model
def fec_small(pretrained: bool = False, **kwargs) -> FEC:
    return _create("fec_small", pretrained, **kwargs)


@register_model
def fec_base(pretrained: bool = False, **kwargs) -> FEC:
    return _create("fec_base", pretrained, **kwargs)


@register_model
def fec_large(pretrained: bool = False, **kwargs) -> FEC:
    return _create("fec_large", pretrained, **kwargs)
