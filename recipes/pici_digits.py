"""PICI on scikit-learn digits (SPEC P8 "digits variant"): 8×8 images upsampled to 16×16, patch 4 (L = 16),
the tiny Fashion-MNIST model; a run takes a few CPU minutes.
    python recipes/pici_digits.py
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.pici import pici_experiment, tiny_pici


def config() -> ExperimentConfig:
    m = tiny_pici(10)
    m.pretrain_epochs, m.train_epochs, m.boost_epochs = 10, 30, 10
    cfg = pici_experiment("pici_digits", m, lr=1e-3)
    d = cfg.data
    d.name, d.image_size, d.in_chans = "digits", 16, 3
    d.batch_size, d.eval_batch_size, d.num_workers = 96, 512, 1
    cfg.engine.eval_every = 5
    cfg.engine.log_every = 10
    cfg.engine.progress = False
    cfg.ckpt.save_at_epoch_end = False
    cfg.ckpt.every_steps = 200
    return cfg


if __name__ == "__main__":
    run_recipe(config)
