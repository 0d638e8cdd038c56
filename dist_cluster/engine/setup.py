"""DeepSpeed config, timm optimizer over the method's named parameter groups, and per-stage timm schedulers."""
from __future__ import annotations

import copy

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from dist_cluster.config import ConfigError


def check_engine(cfg) -> None:
    """Engine settings that cannot work together, refused before a run starts or a job is submitted."""
    e = cfg.engine
    if e.skip_nonfinite < 0:
        raise ConfigError(f"engine.skip_nonfinite must be >= 0, got {e.skip_nonfinite}")
    if e.skip_nonfinite and (e.zero_stage != 0 or e.precision != "fp32"):
        raise ConfigError("engine.skip_nonfinite needs engine.zero_stage=0 and engine.precision=fp32 (a skipped "
                          "step must leave the optimizer's own gradient buffers untouched)")
    for key in ("grad_accum", "log_every"):
        if getattr(e, key) < 1:
            raise ConfigError(f"engine.{key} must be >= 1, got {getattr(e, key)}")
    if cfg.data.batch_size < 1:
        raise ConfigError(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")


def deepspeed_config(cfg, world_size: int, load_universal: bool = False, batch_size: int | None = None) -> dict:
    """`batch_size`: the per-rank batch when the method derives it (default data.batch_size)."""
    e = cfg.engine
    batch_size = batch_size or cfg.data.batch_size
    if e.precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("engine.precision=fp16 needs a GPU; DeepSpeed's CPU accelerator supports fp32 and bf16")
    ds = {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": e.grad_accum,
        "train_batch_size": batch_size * e.grad_accum * world_size,
        "gradient_clipping": cfg.optim.clip_grad,
        "zero_optimization": {"stage": e.zero_stage},
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": e.precision == "bf16"},
        "fp16": {"enabled": e.precision == "fp16"},
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }
    if load_universal:
        ds["checkpoint"] = {"load_universal": True}
    return _merge(ds, copy.deepcopy(e.deepspeed))


def _merge(a: dict, b: dict) -> dict:
    for k, v in b.items():
        a[k] = _merge(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return a


def param_groups(method, weight_decay: float) -> list[dict]:
    """One optimizer group per (named group, decay/no-decay); 1-D params and method.no_weight_decay() get no wd."""
    names = {id(p): n for n, p in method.named_parameters()}
    no_wd = method.no_weight_decay()
    seen, groups = set(), []
    for gname, params in method.param_groups().items():
        params = [p for p in params if p.requires_grad]
        dup = [names[id(p)] for p in params if id(p) in seen]
        if dup:
            raise ValueError(f"parameters in more than one group of param_groups(): {dup[:5]}")
        seen.update(id(p) for p in params)
        decay = [p for p in params if p.ndim > 1 and names[id(p)] not in no_wd]
        plain = [p for p in params if not (p.ndim > 1 and names[id(p)] not in no_wd)]
        for ps, wd in ((decay, weight_decay), (plain, 0.0)):
            if ps:
                groups.append({"params": ps, "weight_decay": wd, "group_name": gname, "lr_scale": 1.0})
    missing = [n for n, p in method.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"trainable parameters missing from param_groups(): {missing[:5]} (set requires_grad=False "
                         "for parameters that never train)")
    return groups


def build_optimizer(method, optim_cfg):
    kwargs = {}
    if "sgd" in optim_cfg.name or "momentum" in optim_cfg.name:
        kwargs["momentum"] = optim_cfg.momentum
    else:
        kwargs.update(betas=tuple(optim_cfg.betas), eps=optim_cfg.eps)
    return create_optimizer_v2(param_groups(method, optim_cfg.weight_decay), opt=optim_cfg.name, lr=optim_cfg.lr,
                               weight_decay=optim_cfg.weight_decay, **kwargs)


def stage_scheduler(optimizer, stage, cfg, updates_per_epoch: int):
    """Set each group's lr_scale (0 = frozen in this stage) and base lr, then build the stage's timm scheduler."""
    base_lr = stage.lr if stage.lr is not None else cfg.optim.lr
    for g in optimizer.param_groups:
        g["lr_scale"] = 1.0 if stage.trains(g["group_name"]) else 0.0
        g["initial_lr"] = base_lr
        g["lr"] = base_lr * g["lr_scale"]
    name = stage.sched or cfg.sched.name
    warmup = stage.warmup_epochs if stage.warmup_epochs is not None else cfg.sched.warmup_epochs
    kwargs = dict(num_epochs=max(stage.epochs - cfg.sched.cooldown_epochs, 1), warmup_epochs=warmup,
                  warmup_lr=cfg.sched.warmup_lr, min_lr=cfg.sched.min_lr, cooldown_epochs=cfg.sched.cooldown_epochs,
                  step_on_epochs=False, updates_per_epoch=max(updates_per_epoch, 1))
    if name == "constant":   # timm's step schedule with no decay: warmup (if any), then the base lr
        name, kwargs["decay_rate"], kwargs["decay_epochs"] = "step", 1.0, 10 ** 6
    # warmup_t is computed in updates; timm rounds warmup_epochs * updates_per_epoch
    sched, _ = create_scheduler_v2(optimizer, sched=name, **kwargs)
    return sched
