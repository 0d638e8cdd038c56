"""The typed config every recipe returns. Method-specific settings live in `ExperimentConfig.method`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dist_cluster.data.config import DataConfig


@dataclass
class OptimConfig:
    name: str = "adamw"            # any timm optimizer name (create_optimizer_v2)
    lr: float = 1e-3               # base lr for the global batch the recipe states
    weight_decay: float = 0.05
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float = 0.0         # global-norm clipping, 0 = off


@dataclass
class SchedConfig:
    name: str = "cosine"           # any timm scheduler name, or "constant"
    warmup_epochs: float = 0.0
    warmup_lr: float = 1e-6
    min_lr: float = 0.0
    cooldown_epochs: int = 0


@dataclass
class EngineConfig:
    zero_stage: Literal[0, 1, 2, 3] = 0            # DeepSpeed ZeRO stage
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"   # fp16 only on GPU; bf16 autocasts through DeepSpeed
    grad_accum: int = 1
    log_every: int = 10            # optimizer steps between log lines
    eval_every: int = 1            # epochs between evaluations (0 = only at the end)
    final_eval: bool = True        # evaluate, report and draw figures at the end (false: checks, benchmarks)
    max_steps: int = 0             # stop after this many optimizer steps (0 = full schedule)
    # tqdm bar on rank 0, on a terminal only
    progress: bool = field(default_factory=lambda: __import__("sys").stderr.isatty())
    deepspeed: dict = field(default_factory=dict)  # extra DeepSpeed config merged last
    skip_nonfinite: int = 0        # skip up to N optimizer steps with a non-finite loss or gradient, then stop
    compile: bool = False          # torch.compile the method's model (GPU runs; a recipe may set it)
    # torch.compile's backend; "aot_eager" traces forward and backward without generating kernels (quick checks)
    compile_backend: str = "inductor"
    channels_last: bool = True     # on CUDA, NHWC image batches for convolutional methods (parameters unchanged)
    dist_timeout_min: float = 30.0  # a collective waiting longer than this fails the run instead of hanging
    # count host syncs of non-log steps (engine/syncs.py; a diagnostic that slows steps); logs the most seen in
    # one step as diag/host_syncs_per_step
    count_syncs: bool = False


@dataclass
class CheckpointConfig:
    every_steps: int = 0           # also save every N optimizer steps (0 = epoch ends only)
    keep_last: int = 2
    resume: bool = True            # pick up the newest complete checkpoint in run_dir
    save_at_epoch_end: bool = True
    save_at_stage_end: bool = False  # also (or only) at the end of each stage: methods that train in seconds
    # fields a resume may change although they define the run (config/identity.py: MAY_CHANGE needs no listing)
    allow_changed: tuple[str, ...] = ()


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    method: Any = None             # the method's own dataclass (see dist_cluster.methods)
    run_dir: str = ""              # default: runs/<name>
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    ckpt: CheckpointConfig = field(default_factory=CheckpointConfig)

    def resolved_run_dir(self) -> str:
        return self.run_dir or f"runs/{self.name}"
