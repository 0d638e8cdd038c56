"""What the engine hands to a method's hooks."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from dist_cluster.distributed.env import DistEnv


@dataclass
class RunContext:
    cfg: Any                        # ExperimentConfig
    env: DistEnv
    run_dir: str
    device: torch.device
    global_step: int = 0            # optimizer steps so far
    epoch: int = 0                  # global epoch (counts across stages; seeds the data order)
    stage: Any = None               # the current Stage
    logger: Any = None              # MetricLogger (rank 0 writes)
    engine: Any = None              # the DeepSpeed engine (engine.module is the method)
    extras: dict = field(default_factory=dict)

    @property
    def figures_dir(self) -> str:
        path = os.path.join(self.run_dir, "figures")
        os.makedirs(path, exist_ok=True)
        return path

    def log(self, record: dict, kind: str = "eval") -> None:
        if self.logger is not None:
            self.logger.log(record, self.global_step, kind=kind)
