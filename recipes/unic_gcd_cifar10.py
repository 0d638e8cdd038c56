"""UNIC, GCD on CIFAR-10, old classes 0-4 (50% labelled), new 5-9, tau1=10, eta=70, tau2=10000
(paper settings, SPEC U5/U6).

    python recipes/unic_gcd_cifar10.py data.source=<ImageFolder root> method.pretrained_path=<DINO ViT-B/16 weights>
    torchrun --nproc_per_node 8 recipes/unic_gcd_cifar10.py data.train=<train.json> data.eval=<eval.json> ...
Paper (DINOv1): All/Old/New 94.04/94.24/93.94 on D_U (Table 2).
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.unic import paper_config


def config() -> ExperimentConfig:
    return paper_config("gcd_cifar10")


if __name__ == "__main__":
    run_recipe(config)
