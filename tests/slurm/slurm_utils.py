"""Helpers for the Slurm tests: the toy recipe, bounded waits on submitit jobs, reading run directories."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY = os.path.join(ROOT, "tests", "runtime", "toy_recipe.py")
# A few optimizer steps of the engine's toy method on digits, one checkpoint every 4 steps.
FAST = ["data.batch_size=16", "method.epochs1=1", "method.epochs2=1", "ckpt.every_steps=4", "engine.log_every=2"]


def wait_done(job, timeout_s: float):
    """job.results() with a deadline: a stuck job is cancelled and the test fails with its logs."""
    deadline = time.time() + timeout_s
    while not job.done():
        if time.time() > deadline:
            job.cancel(check=False)
            logs = "\n".join(f"--- {p}\n{open(p).read()[-2000:]}" for p in _logs(job))
            pytest.fail(f"job {job.job_id} not done after {timeout_s} s (cancelled); state {job.state}\n{logs}")
        time.sleep(1)
    return job.results()


def _logs(job):
    folder = job.paths.folder
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith((".out", ".err"))) \
        if os.path.isdir(folder) else []


def queue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return set(out.split())


def final_weights(run_dir) -> dict:
    from dist_cluster import checkpoint as ckpt
    d = os.path.join(run_dir, "checkpoints")
    tag = ckpt.latest(d)
    assert tag, f"no complete checkpoint in {d}"
    return torch.load(os.path.join(d, tag, "mp_rank_00_model_states.pt"), weights_only=False)["module"]
