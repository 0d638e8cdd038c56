"""Plain fp32 state_dicts from the engine's checkpoints (DeepSpeed's zero_to_fp32 for sharded ZeRO stages)."""
from __future__ import annotations

import os

import torch

from dist_cluster.checkpoint.layout import latest, read_meta


def checkpoint_dir(path: str) -> str:
    """Accept a run directory or its checkpoints/ directory."""
    sub = os.path.join(path, "checkpoints")
    return sub if os.path.isdir(sub) else path


def consolidated_state_dict(path: str, tag: str | None = None) -> dict[str, torch.Tensor]:
    """The whole method's fp32 state_dict from the newest complete checkpoint (or `tag`)."""
    d = checkpoint_dir(path)
    tag = tag or latest(d)
    if tag is None:
        raise FileNotFoundError(f"no complete checkpoint under {d}")
    meta = read_meta(d, tag)
    if meta.get("zero_stage", 0) > 0:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
        state = get_fp32_state_dict_from_zero_checkpoint(d, tag=tag)
    else:   # stage 0 keeps whole tensors in the model-states file
        state = torch.load(os.path.join(d, tag, "mp_rank_00_model_states.pt"), weights_only=False,
                           map_location="cpu")["module"]
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def module_prefix(method) -> str:
    target = method.export_module()
    for name, mod in method.named_modules():
        if mod is target:
            return name
    raise ValueError("export_module() must return a submodule of the method")


def add_import_paths(run_dir: str) -> None:
    """The folders the run imported its method from (import_paths.txt, written at start), as the launcher had."""
    import sys
    path = os.path.join(run_dir, "import_paths.txt")
    if os.path.exists(path):
        for folder in reversed(open(path).read().splitlines()):
            if folder not in sys.path:
                sys.path.insert(0, folder)


def export_state_dict(path: str, tag: str | None = None) -> dict[str, torch.Tensor]:
    """The bare model's state_dict (the method's export_module()), built from the run's saved config."""
    import yaml

    from dist_cluster.config import ExperimentConfig, from_dict
    from dist_cluster.launch import build_method
    run_dir = os.path.dirname(checkpoint_dir(path)) if os.path.basename(checkpoint_dir(path)) == "checkpoints" else path
    add_import_paths(run_dir)
    cfg = from_dict(ExperimentConfig, yaml.safe_load(open(os.path.join(run_dir, "config.yaml"))))
    state = consolidated_state_dict(path, tag)
    prefix = module_prefix(build_method(cfg))
    if not prefix:
        return state
    return {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}


def load_exported_or_ds(path: str) -> dict[str, torch.Tensor]:
    """A file written by tools/export_checkpoint.py, or a run / checkpoint directory of the engine."""
    if os.path.isfile(path):
        return torch.load(path, weights_only=True, map_location="cpu")
    return export_state_dict(path)
