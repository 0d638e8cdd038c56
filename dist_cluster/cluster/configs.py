"""The recipe for each method, sized to the user's data.

What depends on the data is set here, then the user's `key=value` overrides apply, then limits are re-checked:
  all       data.train = the user's manifest (evaluated on the same data), data.name = the data's name,
            global batch = min(the recipe's batch, N), split over the processes, no mid-run checkpoints
            (runs take seconds to minutes; a re-run starts over); unless given: engine.log_every such that
            a run logs about 30 training lines (LOG_LINES), and epochs scaled down where the recipe's
            epochs on N samples would take more than STEP_BUDGET optimizer steps
  cgmcr2    recipes/cgmcr2_digits.py; method.in_dim = the features' width; method.global_batch, when set,
            is clamped to N (it overrides data.batch_size)
  unic      head-only UNIC on the features (recipes/unic_fmnist.py);
            τ₂ (negatives are neighbours ranked ≥ τ₂) = N / (2k), half the mean cluster size, at least 2·τ₁
  pici      recipes/pici_digits.py (the tiny CPU model); data.image_size = the images' larger side rounded
            up to a multiple of the patch size (4), kept within 16..64
"""
from __future__ import annotations

import math

from dist_cluster.cluster.arrays import InputError
from dist_cluster.config import ExperimentConfig, apply_overrides

METHODS = ("cgmcr2", "unic", "pici", "kmeans")
# Optimizer steps the recipes take on the largest data they were tuned on (CgMCR²: the paper's F-MNIST and
# CIFAR-10 schedules, ~1,500 and ~2,000; PICI: recipes/pici_fmnist.py, ~1,000 on 10,000 images; UNIC:
# recipes/unic_fmnist.py, ~14,000 on 60,000): more data does not warrant more steps than that.
STEP_BUDGET = {"cgmcr2": 1500, "pici": 1000, "unic": 14000}
EPOCH_FIELDS = {"cgmcr2": ("warmup_epochs", "finetune_epochs"), "unic": ("epochs",),
                "pici": ("pretrain_epochs", "train_epochs", "boost_epochs")}
LOG_LINES = 30
OUTPUTS = {"cgmcr2": "dist_cluster.cluster.outputs:CgMCR2Run", "unic": "dist_cluster.cluster.outputs:UnicRun",
           "pici": "dist_cluster.cluster.outputs:PICIRun"}


def unic_tau2(n: int, k: int, tau1: int = 10) -> int:
    return max(2 * tau1, min(n - 1, round(n / (2 * k))))


def pici_image_size(h: int, w: int, patch: int = 4) -> int:
    return min(64, max(16, math.ceil(max(h, w) / patch) * patch))


def _base(method: str) -> ExperimentConfig:
    from dist_cluster.launch import load_recipe
    if method == "cgmcr2":
        return load_recipe("cgmcr2_digits")()
    if method == "pici":
        return load_recipe("pici_digits")()
    if method == "unic":
        return load_recipe("unic_fmnist")()
    raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def method_config(method: str, data, k: int, overrides: list[str], run_dir: str, world: int = 1,
                  seed: int = 0) -> ExperimentConfig:
    """The config that trains `method` with k clusters on `data` (a UserData) with `world` processes."""
    if method in ("cgmcr2", "unic") and data.kind != "feature":
        raise InputError(f"{method} clusters feature vectors, but {data.manifest} holds {data.kind}s")
    if method == "pici" and data.kind != "image":
        raise InputError(f"pici trains on images, but {data.manifest} holds {data.kind}s; "
                         "pass a folder of images")
    cfg = _base(method)
    cfg.name, cfg.seed, cfg.run_dir = f"{method}_{data.name}", seed, run_dir
    d = cfg.data
    d.name, d.train, d.eval = data.name, data.manifest, ""
    d.batch_size = max(1, min(d.batch_size, data.n) // world)   # the recipe's batch is global: same on any world size
    cfg.engine.progress = _tty()     # bars only on a terminal; logs stay one line per epoch
    cfg.ckpt.every_steps, cfg.ckpt.save_at_epoch_end, cfg.ckpt.keep_last = 0, False, 1
    m = cfg.method
    if method == "cgmcr2":
        m.in_dim, m.k, m.target = data.feature_dim, k, OUTPUTS[method]
    elif method == "unic":
        m.num_clusters, m.tau2 = k, unic_tau2(data.n, k, m.tau1)
        m.target = OUTPUTS[method]
    else:
        m.num_clusters, m.target = k, OUTPUTS[method]
        d.image_size = pici_image_size(*data.image_size, m.patch_size)
    apply_overrides(cfg, overrides)
    _clamp(cfg, method, data.n, world)
    given = {o.split("=", 1)[0].strip() for o in overrides}
    if not given & {f"method.{f}" for f in EPOCH_FIELDS[method]}:
        size_epochs(m, method, steps_per_epoch(cfg, method, data.n, world))
    if "engine.log_every" not in given:
        cfg.engine.log_every = max(1, round(total_steps(cfg, method, data.n, world) / LOG_LINES))
    return cfg


def steps_per_epoch(cfg, method: str, n: int, world: int) -> int:
    """Optimizer steps per epoch as the trainer counts them (every rank's share of N, remainder dropped)."""
    per_rank = cfg.data.batch_size
    if method == "cgmcr2" and cfg.method.global_batch > 0:
        per_rank = max(1, cfg.method.global_batch // world)
    accum = max(1, cfg.engine.grad_accum)
    return max(1, n // (per_rank * world) // accum)


def total_steps(cfg, method: str, n: int, world: int) -> int:
    return steps_per_epoch(cfg, method, n, world) * sum(getattr(cfg.method, f) for f in EPOCH_FIELDS[method])


def size_epochs(m, method: str, steps: int) -> None:
    """Scale every stage's epochs by the same factor so the run takes about STEP_BUDGET steps, when the recipe's
    epochs would take more (a stage that had epochs keeps at least one)."""
    fields = EPOCH_FIELDS[method]
    epochs = [getattr(m, f) for f in fields]
    if steps * sum(epochs) <= STEP_BUDGET[method]:
        return
    scale = STEP_BUDGET[method] / (steps * sum(epochs))
    for f, e in zip(fields, epochs):
        setattr(m, f, max(1, round(e * scale)) if e > 0 else 0)


def _clamp(cfg, method: str, n: int, world: int) -> None:
    m = cfg.method
    if method == "cgmcr2" and m.global_batch > n:
        m.global_batch = n
    if cfg.data.batch_size * world > n:
        cfg.data.batch_size = max(1, n // world)
    if method == "unic" and m.tau2 >= n:
        raise InputError(f"method.tau2={m.tau2} must be below N={n} (negatives are neighbours ranked ≥ τ₂)")


def _tty() -> bool:
    import sys
    return sys.stderr.isatty()
