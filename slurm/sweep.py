"""Sweeps: `optim.lr=1e-4,3e-4` (a comma list on a scalar field) becomes one run per value; several such
keys give their Cartesian product. Commas inside {}, [] or () and escaped ones (`\\,`) never split, and a
field typed as a list, tuple or mapping takes the whole value as before (`model.dims=64,128` is one run).
"""
from __future__ import annotations

import dataclasses
import itertools
import re
import types
import typing
from typing import Any, Callable

from dist_cluster.config import ConfigError, apply_overrides
from dist_cluster.config.overrides import field_type, parse_overrides, presets_for

_SCALARS = (int, float, str, bool)


def split_top_level(value: str) -> list[str]:
    """Split on commas that are not escaped and not inside brackets or braces."""
    parts, depth, cur, i = [], 0, "", 0
    while i < len(value):
        c = value[i]
        if c == "\\" and value[i + 1:i + 2] == ",":
            cur += "\\,"
            i += 2
            continue
        if c in "[{(":
            depth += 1
        elif c in "]})":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return parts


def unescape(value: str) -> str:
    return value.replace("\\,", ",")


def _is_scalar(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return all(_is_scalar(a) for a in typing.get_args(tp) if a is not type(None))
    return origin is typing.Literal or tp in _SCALARS


def sweepable(cfg: Any, key: str, values: list[str]) -> bool:
    """True when `key` names a scalar field, or a section whose every value is a registered preset name."""
    obj = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            return False   # unknown key: left whole, so building the config reports it
        if i < len(parts) - 1:
            obj = getattr(obj, part)
    tp = field_type(obj, parts[-1])
    if dataclasses.is_dataclass(tp):
        return all(v in presets_for(tp) for v in values)
    return _is_scalar(tp)


def _tag(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f"{k}={re.sub(r'[^A-Za-z0-9._+-]', '_', v)}" for k, v in pairs)


def expand(config_fn: Callable[[], Any], overrides: list[str]) -> list[tuple[str, list[str]]]:
    """[(tag, overrides)] — one entry with tag "" when nothing is swept. Raises ConfigError on bad input."""
    pairs = parse_overrides(overrides)
    fixed = [(k, v) for k, v in pairs if len(split_top_level(v)) == 1]
    probe = apply_overrides(config_fn(), [f"{k}={unescape(v)}" for k, v in fixed])   # types after presets
    axes, base = [], []
    for k, v in pairs:
        values = split_top_level(v)
        if len(values) > 1 and sweepable(probe, k, values):
            if any(x.strip() == "" for x in values):
                raise ConfigError(f"empty value in sweep '{k}={v}'")
            axes.append([(k, x) for x in values])
        else:
            base.append(f"{k}={unescape(v)}")
    if not axes:
        return [("", base)]
    runs = []
    for combo in itertools.product(*axes):
        runs.append((_tag(list(combo)), base + [f"{k}={unescape(x)}" for k, x in combo]))
    return runs
