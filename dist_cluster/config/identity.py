"""A run's identity on resume: the fields that define what a checkpoint holds must not change under it.

A resumed run compares its config with the one its run directory was started (or last knowingly changed)
with. Fields outside MAY_CHANGE that differ are refused, listed as `field: saved → given`, before anything is
written; `ckpt.allow_changed=[KEY, ...]` accepts them knowingly, and the resumed run then writes
`config.resume-N.yaml` beside the untouched `config.yaml` and records the change in metrics.jsonl.

The batch is compared as the global batch (`data.batch_size` × world size): a resume on another number of
processes keeps the global batch with another per-rank size. A config field whose dataclass metadata has
`may_change=True` (a method's figure or diagnostic options) may change too.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re

import yaml

from dist_cluster.config.overrides import ConfigError, to_dict

# How long, how often and where a run logs, evaluates and saves, and how it is launched: none of it changes what
# the checkpoint's weights and data position mean. (The world size may change too; it is not a config field.)
MAY_CHANGE = ("name", "run_dir", "engine.max_steps", "engine.log_every", "engine.eval_every", "engine.final_eval",
              "engine.progress", "engine.dist_timeout_min", "engine.count_syncs", "engine.compile",
              "engine.compile_backend",
              "engine.channels_last", "ckpt.", "data.num_workers", "data.eval_batch_size", "data.root")


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if k == "_type":
            continue
        if isinstance(v, dict) and "_type" in v:
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[prefix + k] = v
    return out


def may_change_fields(cfg, prefix: str = "") -> tuple[str, ...]:
    """Keys of fields marked `field(metadata={"may_change": True})`, at any depth of the config."""
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("may_change"):
            out.append(prefix + f.name)
        elif dataclasses.is_dataclass(value):
            out += may_change_fields(value, f"{prefix}{f.name}.")
    return tuple(out)


def _matches(key: str, patterns) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) or key.startswith(p + ".") for p in patterns)


def saved_configs(run_dir: str) -> list[str]:
    """config.yaml, then config.resume-1.yaml, -2, ... (the newest is what the checkpoints were trained with)."""
    resumes = sorted(glob.glob(os.path.join(run_dir, "config.resume-*.yaml")),
                     key=lambda p: int(re.search(r"resume-(\d+)", p).group(1)))
    first = os.path.join(run_dir, "config.yaml")
    return ([first] if os.path.exists(first) else []) + resumes


def changes(saved: dict, given: dict) -> dict[str, tuple]:
    """Every field whose value differs: {key: (saved, given)} (a field only one side has counts as changed)."""
    a, b = flatten(saved), flatten(yaml.safe_load(yaml.safe_dump(given, sort_keys=False)))
    missing = object()
    return {k: (a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b))
            if a.get(k, missing) != b.get(k, missing)}


def check_resume(cfg, run_dir: str, world: int = 1, saved_world: int = 1) -> dict[str, tuple]:
    """The accepted changes against the newest saved config ({} when there is nothing to resume or nothing
    changed); refused changes raise ConfigError naming each. world / saved_world: the processes now and when
    the checkpoint was written."""
    paths = saved_configs(run_dir)
    if not paths:
        return {}
    with open(paths[-1]) as f:
        saved = yaml.safe_load(f) or {}
    diff = changes(saved, to_dict(cfg))
    bs = diff.get("data.batch_size")
    if bs and isinstance(bs[0], int) and bs[0] * saved_world == bs[1] * world:
        del diff["data.batch_size"]       # the same global batch on another number of processes
    free = MAY_CHANGE + may_change_fields(cfg)
    refused = {k: v for k, v in diff.items() if not _matches(k, free + tuple(cfg.ckpt.allow_changed))}
    if refused:
        rows = "\n".join(f"  {k}: {_show(s)} → {_show(g)}" for k, (s, g) in refused.items())
        keys = ",".join(refused)
        raise ConfigError(
            f"{run_dir} holds a run started with another config; resuming its checkpoint would mix the two "
            f"(saved in {os.path.basename(paths[-1])}):\n{rows}\nuse another run_dir, give the saved values, or "
            f"accept the change knowingly with ckpt.allow_changed=[{keys}]")
    return {k: v for k, v in diff.items() if not _matches(k, free)}


def _show(v) -> str:
    return "(absent)" if not isinstance(v, (int, float, str, bool, list, dict, type(None))) else repr(v)


def write_resume_config(cfg, run_dir: str) -> str:
    """config.resume-N.yaml for a resume with accepted changes (config.yaml stays as the run began)."""
    n = len(saved_configs(run_dir))
    path = os.path.join(run_dir, f"config.resume-{n}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
    return path
