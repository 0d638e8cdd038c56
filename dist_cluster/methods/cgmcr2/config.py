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
    target: str = "dist_cluster.methods.cgmcr2.method:CgMCR2"

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
    # code: γ‖·‖_F/k (Table A.3's γ assume it, B3) | paper: (γ/2)‖·‖_F²
    orth_form: Literal["code", "paper"] = "code"
    s: int = 20                        # entries kept per affinity row
    # cosine (paper) | gaussian (Eq. 10) | code (soft-thresholded F Fᵀ, B4)
    affinity: Literal["cosine", "gaussian", "code"] = "cosine"
    # topk (paper) | none | ds (doubly stochastic, Eq. 11-12)
    post: Literal["topk", "none", "ds"] = "topk"
    sigma: float = 0.5                 # Gaussian bandwidth
    degree: Literal["row", "col"] = "row"                # row (paper) | col (code), B5
    symmetrize: bool = False           # use ½(A + Aᵀ)
    detach_affinity: bool = True       # paper Alg. 1 line 7; the code keeps A in the graph

    # batches: the paper's n is the GLOBAL batch; > 0: each rank draws global_batch // processes (a derived value)
    global_batch: int = 0

    # schedule (Alg. 1, B8): constant lr for T₁ epochs, then cosine over T₂
    warmup_epochs: int = 20            # T₁
    finetune_epochs: int = 30          # T₂
    warmup_weights: dict[str, float] = field(default_factory=lambda: {"R": 1.0, "Rc": 0.0, "ncut": 1.0})
    finetune_weights: dict[str, float] = field(default_factory=lambda: {"R": 1.0, "Rc": 1.0, "ncut": 1.0})
    track_all_terms: bool = True       # also compute terms weighted 0 (no gradient) for the learning curves

    # evaluation
    # argmax of the logits (B7) | gumbel: a fresh Gumbel sample (code)
    test_labels: Literal["argmax", "gumbel"] = "argmax"
    # scikit-learn's default; "geometric" is the reference code's
    nmi_average: Literal["arithmetic", "geometric", "min", "max"] = "arithmetic"
    eval_batch_size: int = 1024
    sc_every_eval: bool = False        # CgMCR²-SC at every evaluation (always at the end)
    sc_s: int = 1000                   # CgMCR²-SC: entries kept per row of |ZZᵀ| (B12)
    baselines: tuple[str, ...] = ("kmeans", "spectral")   # classical baselines on the same pre-features
    spectral_neighbors: int = 10       # SpectralClustering's kNN graph
    figure_points: int = 2000          # eval points shown in the affinity figures
