"""UNIC clustering of Fashion-MNIST on this machine: the cluster head on frozen EfficientNet-Lite0 features
(SPEC U8 (c)); mining over the 60,000 training images, evaluation on the 10,000 test images.

    python recipes/unic_fmnist.py                       # features are extracted once into data/
    torchrun --nproc_per_node 2 recipes/unic_fmnist.py method.eta_quantile=0 method.lambda_neg=0
    python recipes/unic_fmnist.py method.input=images data=fmnist data.image_size=112 \
        data.mean=[0.498,0.498,0.498] data.std=[0.502,0.502,0.502] method.backbone=efficientnet_lite0
        # fine-tunes the last stage + conv_head of EfficientNet-Lite0 instead (SPEC U8 (d); slow on a CPU)
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.unic import fmnist_config


def config() -> ExperimentConfig:
    return fmnist_config("cluster")


if __name__ == "__main__":
    run_recipe(config)
