"""UNIC generalized category discovery on Fashion-MNIST features (SPEC U8 (e)): classes 0-4 are old, half of
their training images labelled; classes 5-9 are new; K = 10; All/Old/New accuracy on the unlabelled training
images (one Hungarian over all classes, "v2"; "v1" logged too).

    python recipes/unic_gcd_fmnist.py
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.unic import fmnist_config


def config() -> ExperimentConfig:
    return fmnist_config("gcd")


if __name__ == "__main__":
    run_recipe(config)
