"""`a.b=c` overrides of nested dataclass configs, type-checked against the field annotations."""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from dist_cluster.errors import UserError


class ConfigError(UserError, ValueError):
    """A config key or value a user gave is wrong; the message says how."""


# Named presets for a sub-config type, so `data=fmnist` swaps a whole section.
_PRESETS: dict[type, dict[str, Any]] = {}


def register_preset(cls: type, name: str):
    """Decorator: register a zero-arg factory returning an instance of `cls` as preset `name`."""
    def deco(fn):
        _PRESETS.setdefault(cls, {})[name] = fn
        return fn
    return deco


def presets_for(cls: type) -> dict[str, Any]:
    return dict(_PRESETS.get(cls, {}))


def all_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a nested dataclass config (sections and leaves)."""
    keys = []
    for f in dataclasses.fields(cfg):
        key = prefix + f.name
        keys.append(key)
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(all_keys(value, key + "."))
    return keys


def _unknown(key: str, cfg_root: Any) -> ConfigError:
    valid = all_keys(cfg_root)
    leaf = key.rsplit(".", 1)[-1]
    near = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    leaves = {}
    for v in valid:
        leaves.setdefault(v.rsplit(".", 1)[-1], []).append(v)
    for m in difflib.get_close_matches(leaf, list(leaves), n=3, cutoff=0.6):
        near += [v for v in leaves[m] if v not in near]
    hint = f"; closest valid keys: {', '.join(near[:5])}" if near else ""
    return ConfigError(f"unknown config key '{key}'{hint}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert `value` (often a string from the command line) to annotation `tp` or raise ConfigError."""
    origin = typing.get_origin(tp) or (tp if tp in (dict, list, tuple) else None)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"bad value {value!r} for '{key}': expected {_type_name(tp)}")
    if origin is typing.Literal:
        for a in args:
            if value == a or (isinstance(value, str) and str(a) == value):
                return a
        raise ConfigError(f"bad value {value!r} for '{key}': expected one of {list(args)}")
    if origin in (list, tuple):
        if isinstance(value, str):
            s = value.strip()
            if s.startswith(("[", "(")):
                s = s[1:-1]
            value = [v.strip() for v in s.split(",") if v.strip()] if s else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"bad value {value!r} for '{key}': expected {_type_name(tp)}")
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(coerce(v, args[0], key) for v in value)
            if args and len(args) != len(value):
                raise ConfigError(f"bad value {value!r} for '{key}': expected {len(args)} items")
            return tuple(coerce(v, a, key) for v, a in zip(value, args or [Any] * len(value)))
        return [coerce(v, args[0] if args else Any, key) for v in value]
    if origin is dict:
        if isinstance(value, dict):
            return dict(value)
        if isinstance(value, str):
            import yaml
            parsed = yaml.safe_load(value)
            if isinstance(parsed, dict):
                return parsed
        raise ConfigError(f"bad value {value!r} for '{key}': expected a mapping like {{a: 1, b: 2}}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"bad value {value!r} for '{key}': expected bool (true/false)")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"bad value {value!r} for '{key}': expected int")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
            if f == int(f) and "." not in str(value).split("e")[0]:
                return int(f)
        except (TypeError, ValueError):
            pass
        raise ConfigError(f"bad value {value!r} for '{key}': expected int")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"bad value {value!r} for '{key}': expected float")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"bad value {value!r} for '{key}': expected float") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"bad value {value!r} for '{key}': expected str")
        return str(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return from_dict(tp, value, key + ".")
        if isinstance(value, str) and value in _PRESETS.get(tp, {}):
            return _PRESETS[tp][value]()
        names = sorted(_PRESETS.get(tp, {}))
        raise ConfigError(f"bad value {value!r} for '{key}': expected a {tp.__name__} preset "
                          f"({', '.join(names) or 'none registered'}) or its fields as '{key}.<field>=...'")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"bad value {value!r} for '{key}': expected {_type_name(tp)}")


def field_type(obj: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    tp = hints[name]
    current = getattr(obj, name)
    # A field typed Any that holds a dataclass (e.g. a method's own config) is typed by its value.
    if tp is Any and dataclasses.is_dataclass(current):
        return type(current)
    return tp


def set_key(cfg: Any, key: str, value: Any) -> None:
    """Set dotted `key` on a nested dataclass config, coercing `value` to the field's type."""
    parts = key.split(".")
    obj = cfg
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            raise _unknown(key, cfg)
        if i == len(parts) - 1:
            setattr(obj, part, coerce(value, field_type(obj, part), key))
        else:
            obj = getattr(obj, part)


def parse_overrides(argv: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for arg in argv:
        if "=" not in arg or arg.startswith("-"):
            raise ConfigError(f"expected key=value, got {arg!r}")
        k, v = arg.split("=", 1)
        pairs.append((k.strip(), v))
    return pairs


def apply_overrides(cfg: Any, argv: list[str] | dict[str, Any]) -> Any:
    """Apply `key=value` strings (or a dict) to `cfg` in place, sections first; returns cfg."""
    pairs = list(argv.items()) if isinstance(argv, dict) else parse_overrides(argv)
    # A whole-section preset (`data=fmnist`) must land before that section's field overrides.
    pairs.sort(key=lambda kv: kv[0].count("."))
    for k, v in pairs:
        set_key(cfg, k, v)
    return cfg


def to_dict(cfg: Any) -> dict:
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v) | {"_type": f"{type(v).__module__}:{type(v).__qualname__}"}
        elif isinstance(v, tuple):
            out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Rebuild a config from `to_dict` output; unknown keys are errors."""
    obj = cls()
    for k, v in data.items():
        if k == "_type":
            continue
        if not any(f.name == k for f in dataclasses.fields(obj)):
            raise _unknown(prefix + k, obj)
        cur = getattr(obj, k)
        if isinstance(v, dict) and "_type" in v:
            import importlib
            mod, qual = v["_type"].split(":")
            sub_cls = getattr(importlib.import_module(mod), qual)
            setattr(obj, k, from_dict(sub_cls, v, prefix + k + "."))
        elif isinstance(v, dict) and dataclasses.is_dataclass(cur):
            setattr(obj, k, from_dict(type(cur), v, prefix + k + "."))
        else:
            setattr(obj, k, coerce(v, field_type(obj, k), prefix + k))
    return obj


def check_choices(cfg: Any, prefix: str = "") -> None:
    """Every `Literal` field of a nested config (a recipe may set one in Python) holds one of its choices."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            check_choices(value, key + ".")
            continue
        tp = field_type(cfg, f.name)
        if typing.get_origin(tp) is typing.Literal and value not in typing.get_args(tp):
            raise ConfigError(f"bad value {value!r} for '{key}': expected one of {list(typing.get_args(tp))}")
