"""UNIC, GCD on ImageNet-100 (Vaze et al. split: first 50 classes old), tau1=10, eta=70, tau2=6300
(paper settings, SPEC U5/U6).

    python recipes/unic_gcd_imagenet100.py data.source=<ImageFolder root> method.pretrained_path=<DINO ViT-B/16 weights>
    torchrun --nproc_per_node 8 recipes/unic_gcd_imagenet100.py data.train=<train.json> data.eval=<eval.json> ...
Paper: All/Old/New 84.55/93.39/80.11 with DINOv1 (Table 2); DINOv2 ViT-B/14 (90.86/95.32/88.63):
    method.backbone=vit_base_patch14_dinov2.lvd142m method.img_size=224 method.pretrained_path=<DINOv2 weights>
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.unic import paper_config


def config() -> ExperimentConfig:
    return paper_config("gcd_imagenet100")


if __name__ == "__main__":
    run_recipe(config)
