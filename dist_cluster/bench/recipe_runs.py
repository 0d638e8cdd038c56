"""Run a recipe as a user does (its own process, or torchrun for several) and read what the run wrote."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from dist_cluster.distributed.spawn import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_recipe(recipe: str, overrides: list[str], run_dir: str, nproc: int = 1, threads: int = 1) -> float:
    """Wall seconds of `recipes/<recipe>.py run_dir=... overrides` (raises with the log's tail on failure)."""
    os.makedirs(run_dir, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"))
    cmd = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                               str(nproc), "--master_port", str(free_port())]
    cmd += [os.path.join(ROOT, "recipes", f"{recipe}.py"), f"run_dir={os.path.abspath(run_dir)}", "ckpt.resume=false",
            "engine.progress=false", *overrides]
    t = time.time()
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return time.time() - t


def records(run_dir: str) -> list[dict]:
    from dist_cluster.logging import read_records
    return read_records(run_dir)


def seconds_per_step(run_dir: str, skip: int = 2) -> float:
    """From the logged train records (log_every=1): the median time between consecutive steps after `skip`."""
    import statistics
    t = {r["step"]: r["time"] for r in records(run_dir) if r["kind"] == "train"}
    steps = sorted(t)[skip:]
    return statistics.median((t[b] - t[a]) / (b - a) for a, b in zip(steps, steps[1:]))


def summary(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)
