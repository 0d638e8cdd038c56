"""Entry points: `python recipes/X.py k=v`, `torchrun ... recipes/X.py`, `deepspeed recipes/X.py`, Slurm.

`run_recipe(config_fn)` parses overrides, resolves the launcher's rank view, initialises torch.distributed
through DeepSpeed (CPU accelerator + gloo when there is no CUDA), builds the method, trains, and shuts down
cleanly. `run(cfg)` does the same for an already-built config (the Slurm job calls it on every task).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
from typing import Callable

import torch

from dist_cluster.config import ConfigError, ExperimentConfig, apply_overrides, check_choices, to_dict
from dist_cluster.distributed import DistEnv, resolve
from dist_cluster.distributed.lifetime import die_with_parent
from dist_cluster.distributed.process_group import init_distributed, shutdown
from dist_cluster.errors import DataError, UserError, debug_requested, exit_with

RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")


def load_recipe(name_or_path: str) -> Callable[[], ExperimentConfig]:
    """'pici' → recipes/pici.py's `config` function; a path to any recipe file also works."""
    path = name_or_path if name_or_path.endswith(".py") else os.path.join(RECIPES_DIR, f"{name_or_path}.py")
    if not os.path.exists(path):
        known = sorted(f[:-3] for f in os.listdir(RECIPES_DIR) if f.endswith(".py") and not f.startswith("_"))
        import difflib
        near = difflib.get_close_matches(name_or_path, known, n=3)
        raise ConfigError(f"unknown recipe '{name_or_path}'" + (f"; did you mean {', '.join(near)}?" if near else "")
                          + f" (recipes: {', '.join(known)})")
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:   # recipes import their shared bases (recipes/common) as a script run would
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"recipe_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "config"):
        raise ConfigError(f"recipe {path} has no config() function")
    return module.config


def build_config(config_fn: Callable[[], ExperimentConfig], overrides: list[str]) -> ExperimentConfig:
    cfg = config_fn()
    apply_overrides(cfg, overrides)
    check_choices(cfg)   # a bad choice set in a recipe is refused before anything runs or is submitted
    from dist_cluster.engine.setup import check_engine
    check_engine(cfg)
    return cfg


def build_method(cfg: ExperimentConfig):
    """The method's config names its class in `target` ("module:Class"); else the Method defined beside it."""
    from dist_cluster.methods.base import Method
    mcfg = cfg.method
    target = getattr(mcfg, "target", None)
    if target:
        mod, qual = target.split(":")
        cls = getattr(importlib.import_module(mod), qual)
    else:
        module = sys.modules[type(mcfg).__module__]
        found = [c for _, c in inspect.getmembers(module, inspect.isclass)
                 if issubclass(c, Method) and c is not Method and c.__module__ == module.__name__]
        if len(found) != 1:
            raise ConfigError(f"cannot tell which Method {type(mcfg).__name__} belongs to; set its `target`")
        cls = found[0]
    return cls(cfg)


def _git_state() -> str:
    root = os.path.dirname(RECIPES_DIR)
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return f"{head or 'unknown'}{' (dirty)' if dirty else ''}\n"
    except OSError:
        return "unknown\n"


def resume_changes(cfg: ExperimentConfig, run_dir: str, world: int) -> tuple[dict | None, int]:
    """(None for a fresh start, else the accepted config changes of a resume ({} if none); the step it resumes
    from). Refused changes raise."""
    from dist_cluster import checkpoint as ckpt
    from dist_cluster.config.identity import check_resume
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    tag = ckpt.latest(ckpt_dir) if cfg.ckpt.resume else None
    if tag is None:
        return None, 0
    try:   # a damaged COMPLETE is the resume's to report (it falls back to an older checkpoint)
        meta = ckpt.read_meta(ckpt_dir, tag)
    except (OSError, ValueError):
        meta = {}
    return check_resume(cfg, run_dir, world, meta.get("world_size", world)), meta.get("step", 0)


def method_import_paths(cfg: ExperimentConfig) -> list[str]:
    """Folders that must be on sys.path to import the method's config and class (a method defined outside the
    package, e.g. beside its recipe): tools that rebuild the model from config.yaml add them."""
    names = [type(cfg.method).__module__] + [getattr(cfg.method, "target", "").split(":")[0]]
    out = []
    for name in filter(None, names):
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file:
            continue
        root = os.path.dirname(os.path.abspath(file))
        for _ in range(name.count(".") + (os.path.basename(file) == "__init__.py")):
            root = os.path.dirname(root)
        if root not in out and not os.path.abspath(__file__).startswith(root + os.sep + "dist_cluster"):
            out.append(root)
    return out


def write_run_files(cfg: ExperimentConfig, run_dir: str, env: DistEnv, changes: dict | None = None) -> None:
    """config.yaml for a fresh start; a resume keeps it, and writes config.resume-N.yaml when it changed fields."""
    import yaml

    from dist_cluster.config.identity import write_resume_config
    os.makedirs(os.path.join(run_dir, "figures"), exist_ok=True)
    if changes is None:
        with open(os.path.join(run_dir, "config.yaml"), "w") as f:
            yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
    elif changes:
        write_resume_config(cfg, run_dir)
    with open(os.path.join(run_dir, "import_paths.txt"), "w") as f:
        f.write("".join(p + "\n" for p in method_import_paths(cfg)))
    with open(os.path.join(run_dir, "command.txt"), "a") as f:
        f.write(f"{env.launcher} world={env.world_size}: {' '.join(sys.argv)}\n")
    with open(os.path.join(run_dir, "git.txt"), "w") as f:
        f.write(_git_state())


def run(cfg: ExperimentConfig) -> dict:
    from dist_cluster.engine.context import RunContext
    from dist_cluster.engine.rundir import RunDirError, RunDirLock, check_writable
    from dist_cluster.engine.trainer import Trainer
    from dist_cluster.logging import MetricLogger
    check_choices(cfg)
    env = resolve()
    if env.launcher in ("torchrun", "deepspeed"):
        die_with_parent()   # a killed launcher leaves no worker training into the run directory
    run_dir = os.path.abspath(cfg.resolved_run_dir())
    before = set(os.listdir(run_dir)) if os.path.isdir(run_dir) else None
    lock = RunDirLock(run_dir).acquire() if env.is_main else None   # before anything is written
    trainer = None
    try:
        if env.is_main:
            check_writable(os.path.join(run_dir, "checkpoints"), "checkpoints folder")
        # every rank: a refused resume starts no process group
        changes, resume_step = resume_changes(cfg, run_dir, env.world_size)
        device = init_distributed(env, cfg.engine.dist_timeout_min)
        if env.is_main:
            write_run_files(cfg, run_dir, env, changes)
        torch.manual_seed(cfg.seed)   # identical initial weights on every rank
        method = build_method(cfg).to(device)
        torch.manual_seed(cfg.seed * 1000 + env.rank)   # per-rank stream for noise drawn during training
        logger = MetricLogger(run_dir, enabled=env.is_main)
        if changes:   # recorded at the step the run resumes from
            logger.log({"changed": {k: {"saved": a, "given": b} for k, (a, b) in changes.items()}}, resume_step,
                       kind="resume_config", echo=True)
        ctx = RunContext(cfg=cfg, env=env, run_dir=run_dir, device=device, logger=logger)
        trainer = Trainer(cfg, method, ctx)
        try:
            summary = trainer.fit()
        finally:
            logger.close()
        shutdown(trainer, method)
    except (ConfigError, RunDirError, DataError):
        if lock is not None and (trainer is None or trainer.ctx.global_step == 0):
            # refused at start-up (k > N, bad data, ...): leave the directory as it was found
            lock.release()
            undo_start(run_dir, before)
        raise
    finally:
        if lock is not None:
            lock.release()
        if env.world_size == 1 and torch.distributed.is_initialized():
            # a failed single-process run leaves no group behind: the next run() in this process starts clean
            # (several ranks exit instead; a barrier here could wait on a rank that failed elsewhere)
            torch.distributed.destroy_process_group()
    return summary


def undo_start(run_dir: str, before: set[str] | None) -> None:
    """Remove what a refused start wrote: the whole directory if it did not exist, else the entries it added."""
    import shutil
    if before is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in set(os.listdir(run_dir)) - before - {".lock"}:
        path = os.path.join(run_dir, name)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


def strip_launcher_args(argv: list[str]) -> list[str]:
    """The deepspeed launcher appends --local_rank=N; the rank comes from the environment instead."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a.startswith("--local_rank") or a.startswith("--local-rank"):
            skip = "=" not in a
        else:
            out.append(a)
    return out


def run_recipe(config_fn: Callable[[], ExperimentConfig], argv: list[str] | None = None) -> dict:
    """A user's mistake (a bad key, bad data, a run directory in use, a diverged run) ends as one `error:`
    message and exit code 2; `--debug` or DIST_CLUSTER_DEBUG=1 shows its traceback instead."""
    debug, argv = debug_requested(strip_launcher_args(sys.argv[1:] if argv is None else argv))
    try:
        summary = run(build_config(config_fn, argv))
    except UserError as e:
        exit_with(e, debug)
    if resolve().is_main and summary.get("metrics"):
        print("final: " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in summary["metrics"].items()), flush=True)
    return summary
