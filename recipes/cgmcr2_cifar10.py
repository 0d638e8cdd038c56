"""CgMCR² on CIFAR-10 CLIP ViT-L/14 features with the paper's Table A.3 settings (lr 1e-4, wd 5e-4, d 128,
T₁ 10, T₂ 10, global batch 512, γ 70, ε 0.5, s 10). Paper: ACC/NMI 97.7/94.3, CgMCR²-SC 97.6/94.2 (Table 3).

Features first (CIFAR-10 as an ImageFolder tree with train/ and val/; CLIP weights from a local file):
    python tools/make_shards.py imagefolder --path <cifar10 root> --out data/cifar10
    torchrun --nproc_per_node 8 tools/extract_features.py --images data/cifar10/train.json --split train \\
        --out data/cifar10_clip_vitl14 --backbone open_clip:ViT-L-14@<weights.pt>   # then the eval split
Then:
    torchrun --nproc_per_node 8 recipes/cgmcr2_cifar10.py [data.train=... data.eval=...]
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.cgmcr2 import clip_features


def config() -> ExperimentConfig:
    return clip_features("cifar10", every_steps=485)   # every 5 epochs


if __name__ == "__main__":
    run_recipe(config)
