"""CgMCR² on scikit-learn digits (1,797 × 64 raw pixels as pre-features): the demo.

    python recipes/cgmcr2_digits.py
    torchrun --nproc_per_node 2 recipes/cgmcr2_digits.py data.batch_size=256
Prints ACC/NMI/ARI each epoch and, at the end, CgMCR² and CgMCR²-SC beside KMeans and SpectralClustering on
the same pixels; figures land in runs/cgmcr2_digits/figures.
"""
from dist_cluster.config import ExperimentConfig
from dist_cluster.launch import run_recipe
from dist_cluster.methods.cgmcr2.config import CgMCR2Config


def config() -> ExperimentConfig:
    m = CgMCR2Config(in_dim=64, hidden=1024, feature_dim=64, k=10, eps=0.5, gamma=50.0, s=20,
                     warmup_epochs=20, finetune_epochs=60, eval_batch_size=2048)
    cfg = ExperimentConfig(name="cgmcr2_digits", method=m, seed=0)
    cfg.data.name = "digits_pixels"
    cfg.data.batch_size = 512          # per rank; the global batch is batch_size × processes
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "adam", 1e-3, 1e-3
    cfg.sched.name = "cosine"          # fine-tune; the warm-up stage keeps lr constant
    cfg.engine.log_every = 10
    cfg.engine.eval_every = 10
    cfg.engine.progress = False
    # a run takes seconds: one checkpoint, written at the end of each stage, is enough to resume
    cfg.ckpt.save_at_epoch_end, cfg.ckpt.save_at_stage_end, cfg.ckpt.every_steps, cfg.ckpt.keep_last = False, True, 0, 1
    return cfg


if __name__ == "__main__":
    run_recipe(config)
