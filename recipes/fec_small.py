"""FEC-Small on ImageNet-1K with the paper's protocol (recipes/common/fec.py).

    deepspeed recipes/fec_small.py data.train=/shards/imagenet/train.json data.eval=/shards/imagenet/val.json
    python recipes/fec_small.py data=fmnist data.image_size=64 method.num_classes=10 method.epochs=2   # CPU-sized
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.fec import imagenet_protocol


def config() -> ExperimentConfig:
    return imagenet_protocol("fec_small", drop_path=0.1)


if __name__ == "__main__":
    run_recipe(config)
