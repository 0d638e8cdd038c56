"""The data cache goes where the user says (--cache-dir, DIST_CLUSTER_CACHE, XDG_CACHE_HOME, ~/.cache), never
into the directory the command is run from."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import ENV, ROOT

from dist_cluster.cluster.inputs import CACHE_ENV, cache_dir


def _env(**extra) -> dict:
    env = {k: v for k, v in ENV.items() if k not in (CACHE_ENV, "XDG_CACHE_HOME")}
    return env | {"PYTHONPATH": ROOT} | extra


def _cli(cwd, env, *args) -> None:
    res = subprocess.run([sys.executable, "-m", "dist_cluster.cluster", *map(str, args)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]


def _manifests(root) -> list[str]:
    return glob.glob(os.path.join(root, "user", "X-*", "train.json"))


@pytest.fixture
def array(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    np.save(tmp_path / "X.npy", x)
    (tmp_path / "cwd").mkdir()
    return tmp_path


def test_cli_writes_nothing_in_the_working_directory(array):
    tmp = array
    env = _env(**{CACHE_ENV: str(tmp / "env_cache"), "HOME": str(tmp / "home")})
    _cli(tmp / "cwd", env, tmp / "X.npy", "--method", "kmeans", "--k", 2, "--run-dir", tmp / "run1")
    assert os.listdir(tmp / "cwd") == []
    assert len(_manifests(tmp / "env_cache")) == 1
    assert not os.path.exists(tmp / "home" / ".cache" / "dist_cluster")
    # the option wins over the environment; --data-root is the same option
    for flag, where in (("--cache-dir", "opt_cache"), ("--data-root", "alias_cache")):
        _cli(tmp / "cwd", env, tmp / "X.npy", "--method", "kmeans", "--k", 2, "--run-dir", tmp / "run2",
             flag, tmp / where)
        assert len(_manifests(tmp / where)) == 1
    assert os.listdir(tmp / "cwd") == []


def test_default_follows_xdg_cache_home(array):
    tmp = array
    _cli(tmp / "cwd", _env(XDG_CACHE_HOME=str(tmp / "xdg"), HOME=str(tmp / "home")), tmp / "X.npy",
         "--method", "kmeans", "--k", 2, "--run-dir", tmp / "run")
    assert os.listdir(tmp / "cwd") == []
    assert len(_manifests(tmp / "xdg" / "dist_cluster")) == 1


def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")     # not absolute: ignored, as the XDG spec says
    assert cache_dir() == str(tmp_path / "home" / ".cache" / "dist_cluster")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == str(tmp_path / "xdg" / "dist_cluster")
    monkeypatch.setenv(CACHE_ENV, "~/mine")
    assert cache_dir() == str(tmp_path / "home" / "mine")
    assert cache_dir("given") == str(tmp_path / "given")   # an explicit relative path is the user's choice
