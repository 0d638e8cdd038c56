"""CgMCR²'s method section of the experiment config (SPEC CgMCR² §2-§6; defaults are the paper's).

Paper variants and ablations are config values: the activation (Table B.6), the affinity (Table B.7: cosine
or Gaussian, or the reference code's soft-thresholded F Fᵀ), its post-processing (Table B.8: top-s, none,
doubly stochastic), s (Table B.9), and the training strategy (Table 6: `warmup_epochs=0` drops the warm-up,
the `*_weights` maps switch −R, Rc and Ncut per stage).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class CgMCR2Config:
    target: str = "dist_cluster.methods.cgmcr2:CgMCR2"

    # model (Table A.2)
    in_dim: int = 0                    # pre-feature width D (0 = taken from the data)
    normalize_input: bool = False      # L2-normalise each pre-feature before P (the paper feeds CLIP's raw output)
    hidden: int = 4096                 # width of the pre-feature layer and of the heads' hidden layers
    n_hidden: int = 1                  # hidden layers per head (Fig. 5 sweeps 1-4)
    feature_dim: int = 128             # d
    k: int = 10                        # clusters = number of classes
    activation: Literal["gumbel", "softmax"] = "gumbel"         # gumbel (paper) | softmax (Table B.6)
    tau: float = 1.0                   # Gumbel-softmax temperature (B6)

    # objective (Eq. 1, 6-9)
    eps: float = 0.5                   # ε of the coding rates
    eps_is_squared: bool = False       # True: ε where the formula has ε², as the reference code (B2)
    gamma: float = 50.0                # γ of the orthogonality penalty
    orth_form: Literal["code", "paper"] = "code"            # code: γ‖·‖_F/k (Table A.3's γ assume it, B3) | paper: (γ/2)‖·‖_F²
    s: int = 20                        # entries kept per affinity row
    affinity: Literal["cosine", "gaussian", "code"] = "cosine"           # cosine (paper) | gaussian (Eq. 10) | code (soft-thresholded F Fᵀ, B4)
    post: Literal["topk", "none", "ds"] = "topk"                 # topk (paper) | none | ds (doubly stochastic, Eq. 11-12)
    sigma: float = 0.5                 # Gaussian bandwidth
    degree: Literal["row", "col"] = "row"                # row (paper) | col (code), B5
    symmetrize: bool = False           # use ½(A + Aᵀ)
    detach_affinity: bool = True       # paper Alg. 1 line 7; the code keeps A in the graph

    # batches: the paper's n is the GLOBAL batch; > 0 sets data.batch_size = global_batch // processes
    global_batch: int = 0

    # schedule (Alg. 1, B8): constant lr for T₁ epochs, then cosine over T₂
    warmup_epochs: int = 20            # T₁
    finetune_epochs: int = 30          # T₂
    warmup_weights: dict[str, float] = field(default_factory=lambda: {"R": 1.0, "Rc": 0.0, "ncut": 1.0})
    finetune_weights: dict[str, float] = field(default_factory=lambda: {"R": 1.0, "Rc": 1.0, "ncut": 1.0})
    track_all_terms: bool = True       # also compute terms weighted 0 (no gradient) for the learning curves

    # evaluation
    test_labels: Literal["argmax", "gumbel"] = "argmax"        # argmax of the logits (B7) | gumbel: a fresh Gumbel sample (code)
    nmi_average: Literal["arithmetic", "geometric", "min", "max"] = "arithmetic"    # scikit-learn's default; "geometric" is the reference code's
    eval_batch_size: int = 1024
    sc_every_eval: bool = False        # CgMCR²-SC at every evaluation (always at the end)
    sc_s: int = 1000                   # CgMCR²-SC: entries kept per row of |ZZᵀ| (B12)
    baselines: tuple[str, ...] = ("kmeans", "spectral")   # classical baselines on the same pre-features
    spectral_neighbors: int = 10       # SpectralClustering's kNN graph
    figure_points: int = 2000          # eval points shown in the affinity figures


# Table A.3 (lr, wd, d, T₁, T₂, bs, γ, ε, s) with k = classes; γ assumes orth_form="code" (SPEC B3).
TABLE_A3 = {
    "mnist": (1e-3, 1e-3, 128, 20, 30, 2048, 50, 0.5, 20, 10),
    "fmnist": (1e-3, 1e-3, 128, 20, 30, 2048, 50, 0.2, 20, 10),
    "cifar10": (1e-4, 5e-4, 128, 10, 10, 512, 70, 0.5, 10, 10),
    "cifar20": (1e-4, 5e-4, 128, 10, 40, 1500, 80, 0.2, 50, 20),
    "cifar100": (5e-4, 1e-4, 128, 20, 30, 2048, 1400, 0.5, 20, 100),
    "flowers102": (5e-4, 5e-4, 128, 20, 30, 2048, 1200, 0.5, 10, 102),
    "dogs120": (1e-3, 1e-3, 128, 20, 30, 2048, 1100, 0.2, 40, 120),
    "tinyimagenet": (3e-4, 5e-4, 256, 20, 30, 2048, 3000, 0.5, 20, 200),
    "imagenet": (1e-3, 1e-4, 256, 10, 10, 3000, 50000, 0.2, 3, 1000),
}


def paper_settings(dataset: str, **overrides):
    """An ExperimentConfig with Table A.3's row for `dataset` (Adam, paper schedule, CLIP ViT-L/14 768-d)."""
    from dist_cluster.config import ExperimentConfig
    if dataset not in TABLE_A3:
        raise ValueError(f"no Table A.3 row for '{dataset}'; rows: {sorted(TABLE_A3)}")
    lr, wd, d, t1, t2, bs, gamma, eps, s, k = TABLE_A3[dataset]
    m = CgMCR2Config(in_dim=768, feature_dim=d, k=k, eps=eps, gamma=gamma, s=s, orth_form="code",
                     warmup_epochs=t1, finetune_epochs=t2, global_batch=bs)
    for key, value in overrides.items():
        setattr(m, key, value)
    cfg = ExperimentConfig(name=f"cgmcr2_{dataset}", method=m, seed=0)
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "adam", lr, wd
    cfg.sched.name, cfg.sched.min_lr = "cosine", 0.0
    cfg.data.batch_size = bs
    cfg.data.eval_batch_size = 1024
    cfg.engine.eval_every = 1
    return cfg
