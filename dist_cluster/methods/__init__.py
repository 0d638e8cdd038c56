"""One package per method over the contract in `base.py`: cgmcr2/, fec/, pici/, unic/."""
from __future__ import annotations

import importlib


def lazy_exports(package: str, names: dict[str, str]):
    """A module `__getattr__` importing `name` from `package.<module>` on first use, so importing a method's
    config (recipes, the Slurm submitter) does not load its models."""
    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__
