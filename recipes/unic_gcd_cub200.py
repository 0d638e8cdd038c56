"""UNIC, GCD on CUB-200, old classes 0-99, tau1=10, eta at the 0.6 quantile of |U| (not in the paper), tau2=1000
(paper settings, SPEC U5/U6).

    python recipes/unic_gcd_cub200.py data.source=<ImageFolder root> method.pretrained_path=<DINO ViT-B/16 weights>
    torchrun --nproc_per_node 8 recipes/unic_gcd_cub200.py data.train=<train.json> data.eval=<eval.json> ...
Paper: All/Old/New 44.35/51.63/40.70 with DINOv1 (Table 2).
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.unic import paper_config


def config() -> ExperimentConfig:
    return paper_config("gcd_cub200")


if __name__ == "__main__":
    run_recipe(config)
