"""FEC-Base on ImageNet-1K with the paper's protocol (dist_cluster.methods.fec.config).

    deepspeed recipes/fec_base.py data.train=/shards/imagenet/train.json data.eval=/shards/imagenet/val.json
    python recipes/fec_base.py data=fmnist data.image_size=64 method.num_classes=10 method.epochs=2   # CPU-sized
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.fec import imagenet_protocol


def config() -> ExperimentConfig:
    return imagenet_protocol("fec_base", drop_path=0.1)  # drop path not given for Base; tune with method.drop_path


if __name__ == "__main__":
    run_recipe(config)
