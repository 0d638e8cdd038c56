"""Train a method on the user's data through the normal launcher path, `n_init` seeds in sequence; which
seed is kept is decided in dist_cluster.cluster.selection (label-free rules, `--select`).

Seeds run one after another in the same processes; each has its own run directory `<run_dir>/seed_<s>`
when n_init > 1. `--method kmeans` has no training run: dist_cluster.cluster.kmeans_run fits it on rank 0.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from dist_cluster.cluster.selection import DEFAULT_RULE, RULES, select, selection_report  # noqa: F401


@dataclass
class SeedRun:
    seed: int
    run_dir: str
    loss: float | None
    metrics: dict = field(default_factory=dict)
    wall_s: float | None = None


def final_loss(run_dir: str) -> float | None:
    from dist_cluster.logging import read_records
    losses = [r["loss"] for r in read_records(run_dir, "train") if "loss" in r]
    if not losses:
        return None
    tail = losses[-max(1, len(losses) // 10):]
    return float(np.mean(tail))


def train_seeds(method: str, data, k: int, overrides: list[str], run_dir: str, n_init: int = 1, seed: int = 0,
                world: int = 1) -> list[SeedRun]:
    """Every seed's run (all ranks train; the list is complete on every rank)."""
    from dist_cluster.cluster.configs import method_config
    from dist_cluster.launch import run
    runs = []
    base_port = int(os.environ.get("MASTER_PORT", "0") or 0)
    for s in range(seed, seed + n_init):
        if s > seed and world > 1 and base_port:
            # the launcher's store still holds the previous group's addresses: rendezvous on a fresh store
            os.environ["MASTER_PORT"] = str(base_port + s - seed)
            os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"
        rd = os.path.join(run_dir, f"seed_{s}") if n_init > 1 else run_dir
        cfg = method_config(method, data, k, overrides, rd, world, seed=s)
        summary = run(cfg)
        runs.append(SeedRun(s, os.path.abspath(rd), final_loss(rd), summary.get("metrics", {}),
                            summary.get("wall_time_s")))
    return runs

