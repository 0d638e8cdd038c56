"""CgMCR² on CIFAR-100 CLIP ViT-L/14 features with the paper's Table A.3 settings (lr 5e-4, wd 1e-4, d 128,
T₁ 20, T₂ 30, global batch 2048, γ 1400, ε 0.5, s 20, k 100). Paper: ACC/NMI 77.8/81.9, CgMCR²-SC 78.3/82.5.

Features: as in recipes/cgmcr2_cifar10.py, into data/cifar100_clip_vitl14 (ImageFolder tree of the 100 fine
classes). Then:
    torchrun --nproc_per_node 8 recipes/cgmcr2_cifar100.py [data.train=... data.eval=...]
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.cgmcr2 import clip_features


def config() -> ExperimentConfig:
    return clip_features("cifar100", every_steps=240)   # every 10 epochs


if __name__ == "__main__":
    run_recipe(config)
