"""Build an FEC for inspection from whatever weights a user has: an exported plain state_dict, a training
checkpoint or run directory written by the recipes, or the reference implementation's checkpoint."""
from __future__ import annotations

import os
import re

import timm
import torch

import dist_cluster.models  # noqa: F401  (registers fec_* with timm)
from dist_cluster.models.fec import MODEL_ARGS, FEC, checkpoint_filter_fn

# the classification method holds the backbone as `model` and its EMA copy as `ema.module`
_PREFIXES = ("ema.module.", "module.ema.module.", "model.", "module.model.", "module.")


def fec_weights(state_dict: dict, prefer_ema: bool = True) -> dict:
    """Strip a method/wrapper prefix (EMA weights first when present) and map reference names."""
    for key in ("state_dict_ema", "state_dict", "model", "module"):
        if isinstance(state_dict.get(key), dict) and (key != "state_dict_ema" or prefer_ema):
            state_dict = state_dict[key]
            break
    prefixes = _PREFIXES if prefer_ema else _PREFIXES[2:]
    for prefix in prefixes:
        picked = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if any(k.startswith(("stages.", "network.")) for k in picked):
            state_dict = picked
            break
    return checkpoint_filter_fn(state_dict)


def read_state_dict(path: str) -> dict:
    """A plain file is torch.load-ed; a run directory or DeepSpeed checkpoint goes through the export path."""
    if os.path.isfile(path):
        return torch.load(path, map_location="cpu", weights_only=True)
    try:
        from dist_cluster.checkpoint import load_exported_or_ds
    except ImportError as e:
        raise ValueError(f"{path} is not a file, and this install cannot read checkpoint directories") from e
    return load_exported_or_ds(path)


def infer_variant(state_dict: dict) -> str:
    depths = [0, 0, 0, 0]
    for k in state_dict:
        m = re.match(r"^stages\.(\d+)\.blocks\.(\d+)\.", k)
        if m:
            depths[int(m[1])] = max(depths[int(m[1])], int(m[2]) + 1)
    dims = [state_dict[f"stages.{i}.blocks.0.norm1.weight"].shape[0] for i in range(4) if depths[i]]
    for name, args in MODEL_ARGS.items():
        if tuple(depths) == args["depths"] and tuple(dims) == args["dims"]:
            return name
    raise ValueError(f"weights match no FEC variant (depths {depths}, dims {dims})")


def load_fec(path: str, model: str = "", prefer_ema: bool = True, **model_kwargs) -> FEC:
    """Model name, class count and input channels come from the weights unless given."""
    sd = fec_weights(read_state_dict(path), prefer_ema)
    name = model or infer_variant(sd)
    kwargs = dict(num_classes=sd["head.weight"].shape[0] if "head.weight" in sd else 0,
                  in_chans=sd["patch_embed.weight"].shape[1] - 2)
    net = timm.create_model(name, pretrained=False, **(kwargs | model_kwargs))
    net.load_state_dict(sd, strict=True)
    return net.eval()
