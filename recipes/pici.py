"""PICI at the paper's settings (SPEC P2-P5): ViT-Small (384-d, 6 blocks, 12 heads) + MAE decoder (512-d,
8 blocks, 16 heads), 224×224 inputs, 50% masking, batch 96, Adam 1e-4 constant, no weight decay, seed 42,
200 pre-train / 800 train / 50 boost epochs, transductive evaluation of the whole data set.

The data are an ImageFolder tree (one class per folder; `train/` + `val/` or a single tree) sharded on first
use, or existing manifests:
    python recipes/pici.py data.source=/data/RSOD method.num_clusters=4
    python recipes/pici.py data.train=/shards/uc_merced/train.json method.num_clusters=21
    torchrun --nproc_per_node 8 recipes/pici.py data.source=/data/AID method.num_clusters=30 data.batch_size=12
    python slurm/submit.py recipe=pici nodes=1 gpus_per_node=8 data.source=/data/AID method.num_clusters=30
data.batch_size is per process: the paper's N = 96 is one GPU's batch, so keep batch_size × processes = 96
to match it (the losses use the global batch, SPEC P7-15).
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe
from dist_cluster.methods.pici.config import PICIConfig

from common.pici import pici_experiment


def config() -> ExperimentConfig:
    cfg = pici_experiment("pici", PICIConfig(num_clusters=4))
    d = cfg.data
    d.name, d.image_size, d.in_chans = "imagefolder", 224, 3
    d.batch_size, d.eval_batch_size, d.num_workers = 96, 256, 8
    cfg.engine.eval_every = 50
    cfg.engine.log_every = 20
    cfg.ckpt.keep_last = 2
    return cfg


if __name__ == "__main__":
    run_recipe(config)
