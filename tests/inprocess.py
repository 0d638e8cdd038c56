"""Run an entry point (a recipe's run_recipe, the cluster CLI's main) the way `python ...` would, but in this
process: the interpreter's start-up (torch, timm, DeepSpeed, scikit-learn) is most of a small run's time.
Tests of signals, locks held by another process, launchers and process exits use real processes instead."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import subprocess
import sys
import traceback
from typing import Callable

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def run_in_process(entry: Callable[[list[str]], object], argv: list[str], env: dict | None = None,
                   cwd: str | None = None) -> subprocess.CompletedProcess:
    """entry(argv) with a subprocess's environment (one thread, no launcher variables, `env` added, `cwd`),
    its output captured and its exit code: 2 for a user error, 1 with a traceback for a crash."""
    import torch.distributed as dist
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    for name in LAUNCHER_VARS:
        os.environ.pop(name, None)
    os.environ.update({"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", **(env or {})})
    torch.set_default_dtype(torch.float32)
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        if cwd:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                entry([str(a) for a in argv])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@functools.cache
def recipe_config(path: str):
    """The `config` function of a recipe file (recipes/<name>.py or any path)."""
    if not os.path.isabs(path) and not path.endswith(".py"):
        path = os.path.join(ROOT, "recipes", f"{path}.py")
    name = "recipe_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.config


def run_recipe_in_process(recipe: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    """`python recipes/<recipe>.py *argv` (recipe: a name under recipes/ or a file path), in this process."""
    from dist_cluster.launch import run_recipe
    config = recipe_config(recipe)
    return run_in_process(lambda a: run_recipe(config, a), argv, **kw)


def cluster_cli_in_process(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """`python -m dist_cluster.cluster *argv`, in this process."""
    from dist_cluster.cluster.__main__ import main
    return run_in_process(main, argv, **kw)
