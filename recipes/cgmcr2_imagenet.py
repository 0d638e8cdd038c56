"""CgMCR² on ImageNet-1k CLIP ViT-L/14 features with the paper's Table A.3 settings (lr 1e-3, wd 1e-4,
d 256, T₁ 10, T₂ 10, global batch 3000, γ 50000, ε 0.2, s 3, k 1000). Paper: ACC/NMI 67.5/87.0,
CgMCR²-SC 67.7/87.1 (Table 3).

Features (1.28 M train / 50 k val, 768-d): shard the ImageFolder tree, then
    torchrun --nproc_per_node 8 tools/extract_features.py --images data/imagenet/train.json --split train \\
        --out data/imagenet_clip_vitl14 --backbone open_clip:ViT-L-14@<weights.pt>   # and the eval split
    # or: python slurm/submit.py recipe=cgmcr2_imagenet ...
    torchrun --nproc_per_node 8 recipes/cgmcr2_imagenet.py
Rc's 1000 clusters are sharded across ranks (dist_cluster.objectives.coding_rate). The end-of-run table is
computed on rank 0 on the evaluation split (the 50,000 validation rows, never the 1.28 M training rows), its
title says so: CgMCR²-SC, and the baselines (seed 0: dist_cluster's k-means and its kNN-graph spectral
clustering, whose sample of max(10,000, 50·k) rows is all 50,000 at k = 1000), run on all 50,000 rows on
rank 0's device; silhouettes on a seeded 10,000-row sample. Each step is printed with its time, and the
estimate first when over a minute.
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe

from common.cgmcr2 import paper_settings


def config() -> ExperimentConfig:
    cfg = paper_settings("imagenet", track_all_terms=False)   # no gradient-free Rc over 1000 clusters in warm-up
    cfg.data.name = "imagenet_clip_vitl14"
    cfg.data.train = "data/imagenet_clip_vitl14/train.json"
    cfg.data.eval = "data/imagenet_clip_vitl14/eval.json"
    cfg.data.eval_batch_size = 4096
    cfg.ckpt.every_steps = 200
    cfg.ckpt.keep_last, cfg.ckpt.save_at_epoch_end = 1, False
    return cfg


if __name__ == "__main__":
    run_recipe(config)
