"""Launch the engine's toy recipe the way a user would; read back its losses and weights, and fingerprint
what a fault must not change."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import torch
from inprocess import run_recipe_in_process

from dist_cluster import checkpoint as ckpt
from dist_cluster.distributed.spawn import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "tests", "runtime", "toy_recipe.py")
ENV = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
SHORT = ["method.epochs1=1", "method.epochs2=1"]


def torchrun(nproc: int) -> list[str]:
    return [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", str(nproc),
            "--master_port", str(free_port())]


def toy_cmd(run_dir, *overrides, nproc: int = 1) -> list[str]:
    return ([sys.executable] if nproc == 1 else torchrun(nproc)) + [RECIPE, f"run_dir={run_dir}", *overrides]


def run_toy(run_dir, *overrides, nproc: int = 1, ok: bool = True, fresh: bool = False) -> subprocess.CompletedProcess:
    """One process runs in this one through the recipe's own entry point (run_recipe), unless `fresh`: the
    interpreter's start-up is most of a toy run's time. Runs under a launcher, and tests of signals, locks and
    process exits, use real processes."""
    if nproc == 1 and not fresh:
        res = run_recipe_in_process(RECIPE, [f"run_dir={run_dir}", *overrides])
    else:
        res = subprocess.run(toy_cmd(run_dir, *overrides, nproc=nproc), env=ENV, capture_output=True, text=True,
                             timeout=600)
    if ok:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


def tree_hashes(path) -> dict[str, str]:
    """sha256 of every file under path (relative names)."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def checkpoint_weights(ckpt_dir: str, tag: str) -> dict[str, torch.Tensor]:
    return torch.load(os.path.join(ckpt_dir, tag, "mp_rank_00_model_states.pt"), weights_only=False)["module"]


def all_checkpoints_finite(ckpt_dir: str) -> bool:
    return all(all(torch.isfinite(v).all() for v in checkpoint_weights(ckpt_dir, t).values())
               for t in ckpt.complete_tags(ckpt_dir))


def train_losses(run_dir) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
    return [(x["step"], x["loss"]) for x in lines if x["kind"] == "train"]


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    d = os.path.join(str(run_dir), "checkpoints")
    return checkpoint_weights(d, ckpt.latest(d))


def pids_using(run_dir, exclude: int | None = None) -> list[int]:
    """Processes whose command line names the run directory (other than this one and `exclude`)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if f"run_dir={run_dir}" in cmdline and int(pid) not in (os.getpid(), exclude):
            out.append(int(pid))
    return out
