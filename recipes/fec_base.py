"""FEC-Base on ImageNet-1K with the paper's protocol (recipes/common/fec.py); launched as recipes/fec_small.py is:
    deepspeed recipes/fec_base.py data.train=/shards/imagenet/train.json data.eval=/shards/imagenet/val.json
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.fec import imagenet_protocol


def config() -> ExperimentConfig:
    return imagenet_protocol("fec_base", drop_path=0.1)  # drop path not given for Base; tune with method.drop_path


if __name__ == "__main__":
    run_recipe(config)
