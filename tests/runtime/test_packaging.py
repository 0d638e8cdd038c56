"""The install keeps a cluster's own torch: pyproject.toml states a range, the quickstart's pins live in
constraints.txt (what `make` installs and CI tests)."""
import os

import tomllib
import torch
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _requirements() -> dict[str, Requirement]:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return {r.name: r for r in map(Requirement, deps)}


def _pins() -> dict[str, str]:
    out = {}
    for line in open(os.path.join(ROOT, "constraints.txt")):
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[name.strip()] = version.strip()
    return out


def test_torch_is_a_range_that_admits_the_gpu_machines_and_the_quickstarts_versions():
    req = _requirements()
    for name in ("torch", "torchvision"):
        assert not any(s.operator in ("==", "===") for s in req[name].specifier), f"{name} is pinned: {req[name]}"
    # 2.11 ran the recipes on an H200 (torch 2.11.0+cu130); 2.14.1 is what the quickstart installs here
    assert req["torch"].specifier.contains("2.11.0") and req["torch"].specifier.contains("2.14.1")
    assert req["torchvision"].specifier.contains("0.26.0") and req["torchvision"].specifier.contains("0.29.1")


def test_constraints_pin_what_this_environment_has_and_the_range_admits_it():
    pins, req = _pins(), _requirements()
    assert set(pins) == {"torch", "torchvision"}
    for name, version in pins.items():
        assert req[name].specifier.contains(version)
    assert Version(torch.__version__).base_version == pins["torch"]
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    assert "-c constraints.txt" in makefile
