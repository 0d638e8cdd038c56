"""PICI at CPU scale on Fashion-MNIST (SPEC P8): the same code path as `recipes/pici.py`, tiny sizes.

28×28 grey images replicated to 3 channels, patch 4 (L = 49, 24 visible), encoder 64-d × 2 blocks × 4 heads,
decoder 64-d × 1 block × 4 heads, G_I 64→64→32, G_C 64→64→10; batch 96, Adam 1e-3; 2 / 6 / 2 epochs on the
first 10,000 training images, evaluated transductively on the same images.
    python recipes/pici_fmnist.py
    torchrun --nproc_per_node 2 recipes/pici_fmnist.py data.batch_size=48
Figures (reconstructions, confusion matrix, t-SNE, curves) land in runs/pici_fmnist/figures.
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.pici import pici_experiment, tiny_pici


def config() -> ExperimentConfig:
    cfg = pici_experiment("pici_fmnist", tiny_pici(10), lr=1e-3)
    d = cfg.data
    d.name, d.image_size, d.in_chans = "fmnist", 28, 3
    d.train_samples, d.batch_size, d.eval_batch_size = 10_000, 96, 500
    d.num_workers = 1                  # decoding and augmentation overlap the step (2 cores)
    cfg.engine.eval_every = 1
    cfg.engine.log_every = 10
    cfg.engine.progress = False
    return cfg


if __name__ == "__main__":
    run_recipe(config)
