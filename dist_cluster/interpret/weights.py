"""Build an FEC for inspection from whatever weights a user has: an exported plain state_dict, a training
checkpoint or run directory written by the recipes, or the reference implementation's checkpoint."""
from __future__ import annotations

import os
import re

import timm
import torch

import dist_cluster.models  # noqa: F401  (registers fec_* with timm)
from dist_cluster.models.fec import FEC, MODEL_ARGS, checkpoint_filter_fn

# the classification method holds the backbone as `model` and its EMA copy as `ema.module`
_PREFIXES = ("ema.module.", "module.ema.module.", "model.", "module.model.", "module.")


def fec_weights(state_dict: dict, prefer_ema: bool = False) -> dict:
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


def read_state_dict(path: str, whole_method: bool = False) -> dict:
    """A plain file is torch.load-ed; a run directory or DeepSpeed checkpoint goes through the export path
    (the bare model), or, with whole_method, gives every module of the method (the EMA copy included)."""
    if os.path.isfile(path):
        return torch.load(path, map_location="cpu", weights_only=True)
    from dist_cluster.checkpoint.export import consolidated_state_dict, load_exported_or_ds
    return consolidated_state_dict(path) if whole_method else load_exported_or_ds(path)


def run_options(path: str) -> dict:
    """Model options recorded in a run directory's config.yaml (path may be the run, checkpoints/ or a tag)."""
    import yaml
    for d in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        cfg_path = os.path.join(d, "config.yaml")
        if os.path.isdir(path) and os.path.isfile(cfg_path):
            method = (yaml.safe_load(open(cfg_path)) or {}).get("method") or {}
            return {k: method[k] for k in ("model", "assign_on", "agg_weight") if k in method}
    return {}


def stage_depths(state_dict: dict) -> tuple[int, ...]:
    depths = [0, 0, 0, 0]
    for k in state_dict:
        m = re.match(r"^stages\.(\d+)\.blocks\.(\d+)\.", k)
        if m:
            depths[int(m[1])] = max(depths[int(m[1])], int(m[2]) + 1)
    return tuple(depths)


def infer_variant(state_dict: dict) -> str:
    """The variant with the weights' widths (a run with method.depths has fewer blocks than it)."""
    depths = stage_depths(state_dict)
    dims = [state_dict[f"stages.{i}.blocks.0.norm1.weight"].shape[0] for i in range(4) if depths[i]]
    mixer = [state_dict[f"stages.{i}.blocks.0.token_mixer.f.weight"].shape[0] for i in range(4) if depths[i]]
    for name, args in MODEL_ARGS.items():
        if tuple(dims) == args["dims"] and tuple(mixer) == tuple(h * args["head_dim"] for h in args["heads"]):
            return name
    raise ValueError(f"weights match no FEC variant (depths {list(depths)}, dims {dims})")


def load_fec(path: str, model: str = "", ema: bool = False, **model_kwargs) -> FEC:
    """Model name, class count, input channels and blocks per stage come from the weights (and a run's config)
    unless given; ema picks the method's EMA weights where the checkpoint has them."""
    sd = fec_weights(read_state_dict(path, whole_method=ema), prefer_ema=ema)
    options = run_options(path)
    model_kwargs = {k: v for k, v in options.items() if k != "model"} | model_kwargs
    name = model or (options.get("model", "") if options.get("model", "").startswith("fec") else "") or \
        infer_variant(sd)
    kwargs = dict(num_classes=sd["head.weight"].shape[0] if "head.weight" in sd else 0,
                  in_chans=sd["patch_embed.weight"].shape[1] - 2, depths=stage_depths(sd))
    net = timm.create_model(name, pretrained=False, **(kwargs | model_kwargs))
    net.load_state_dict(sd, strict=True)
    return net.eval()
