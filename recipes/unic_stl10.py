"""UNIC, clustering STL-10 (5k train / 8k test, upsampled to 224), K=10, tau1=10, eta=70, tau2=1000
(paper settings, SPEC U5/U6).

    python recipes/unic_stl10.py data.source=<ImageFolder root> method.pretrained_path=<DINO ViT-B/16 weights>
    torchrun --nproc_per_node 8 recipes/unic_stl10.py data.train=<train.json> data.eval=<eval.json> ...
Paper: ACC/NMI/ARI 98.75/96.87/97.25 (Table 1).
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.unic import paper_config


def config() -> ExperimentConfig:
    return paper_config("stl10")


if __name__ == "__main__":
    run_recipe(config)
