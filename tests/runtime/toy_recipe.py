"""Recipe for the engine tests: `python tests/runtime/toy_recipe.py k=v ...` (also under torchrun/deepspeed)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from toy_method import ToyConfig  # noqa: E402

from dist_cluster.config import ExperimentConfig  # noqa: E402
from dist_cluster.launch import run_recipe  # noqa: E402


def config() -> ExperimentConfig:
    cfg = ExperimentConfig(name="toy", method=ToyConfig(), seed=3)
    cfg.data.batch_size = 32
    cfg.optim.lr = 0.05
    cfg.optim.name = "adamw"
    cfg.optim.weight_decay = 0.01
    cfg.engine.log_every = 5
    cfg.engine.progress = False
    return cfg


if __name__ == "__main__":
    run_recipe(config)
