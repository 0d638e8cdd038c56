"""UNIC, clustering ImageNet-200 (TEMI split), K=200, batch 512, tau1=50, eta=1500, tau2=6300
(paper settings, SPEC U5/U6).

    python recipes/unic_imagenet200.py data.source=<ImageFolder root> method.pretrained_path=<DINO ViT-B/16 weights>
    torchrun --nproc_per_node 8 recipes/unic_imagenet200.py data.train=<train.json> data.eval=<eval.json> ...
Paper: ACC/NMI/ARI 75.25/85.93/64.73 (Table 1).
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.unic import paper_config


def config() -> ExperimentConfig:
    return paper_config("imagenet200", batch_size=512)


if __name__ == "__main__":
    run_recipe(config)
