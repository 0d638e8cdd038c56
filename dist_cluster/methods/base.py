"""The contract between a method and the engine.

A method is one nn.Module holding its model(s) and losses (the DeepSpeed engine wraps all of it), plus:
  - `stages()`: the training schedule (epochs per stage, parameter groups trained, loss weights, lr schedule);
  - `param_groups()`: named groups of trainable parameters that stages refer to;
  - `forward(batch, stage)`: a dict whose `loss/<name>` entries are loss terms (weighted by the stage and
    summed by the engine) and whose other scalar entries are logged;
  - `build_loaders(ctx)`: the training loader (Loader protocol) and anything needed for evaluation;
  - hooks, called by the engine on every rank: `on_stage_start`, `on_epoch_start`, `on_step_end`, `on_train_end`;
    `evaluate` and `write_figures` (rank 0) at the end.
Parameters that never train have requires_grad=False; parameters frozen only in some stages get lr 0 there
(their optimizer group's lr_scale), so the optimizer and the DeepSpeed engine are built once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from dist_cluster.engine.context import RunContext


@dataclass
class Stage:
    name: str
    epochs: int
    train: tuple[str, ...] = ("all",)          # names from param_groups(); ("all",) = every group
    loss_weights: dict[str, float] = field(default_factory=dict)  # missing term → weight 1.0
    lr: float | None = None                    # None → optim.lr
    sched: str | None = None                   # None → sched.name; "constant" keeps lr fixed
    warmup_epochs: float | None = None         # None → sched.warmup_epochs

    def weight(self, term: str) -> float:
        return float(self.loss_weights.get(term, 1.0))

    def trains(self, group: str) -> bool:
        return "all" in self.train or group in self.train


class Loader(Protocol):
    """What the engine needs from a training data stream: equal batches on every rank, resumable."""

    def batches_per_epoch(self) -> int: ...

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[dict]: ...


class Method(nn.Module):
    """Base class; subclasses set `self.cfg` and build their modules in __init__(cfg: ExperimentConfig)."""

    convolutional = False   # True: on GPUs the engine passes image batches in channels_last memory

    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"all": [p for p in self.parameters() if p.requires_grad]}

    def no_weight_decay(self) -> set[str]:
        """Names (as in named_parameters) excluded from weight decay besides every 1-D parameter."""
        return set()

    def batch_size_per_rank(self, world_size: int) -> int:
        """The batch each rank draws (the engine and the loaders use it); a method whose paper states a global
        batch derives it here instead of rewriting the config."""
        return self.cfg.data.batch_size

    def derived(self) -> dict:
        """Values the method derived from the config and the data (logged and put in summary.json, never
        written back into the config)."""
        return {}

    def build_loaders(self, ctx: "RunContext") -> Loader:
        raise NotImplementedError

    def forward(self, batch: dict, stage: Stage) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_stage_start(self, stage: Stage, ctx: "RunContext", resumed: bool) -> None:
        """Called on every rank before a stage's first step, and again when a run resumes inside it."""

    def on_epoch_start(self, epoch: int, ctx: "RunContext") -> None:
        """Called on every rank before an epoch's first batch is drawn (also the resumed epoch)."""

    def on_step_end(self, step: int, out: dict[str, float], ctx: "RunContext") -> None:
        """Called on every rank after optimizer step `step` (1-based); `out` holds the logged, rank-averaged
        loss (and, on log steps, the method's scalars)."""

    def on_train_end(self, ctx: "RunContext") -> None:
        """Called on every rank after the last step, before the final evaluation's figures."""

    @torch.no_grad()
    def evaluate(self, ctx: "RunContext") -> dict[str, float]:
        return {}

    def summary(self) -> dict:
        """Extra entries for summary.json (rank 0, after write_figures), e.g. a final results table."""
        return {}

    def write_figures(self, ctx: "RunContext") -> list[str]:
        """Write PNGs into ctx.figures_dir at the end of training; return paths. Called on rank 0 only, while the
        other ranks wait (no collectives in here)."""
        return []

    def export_module(self) -> nn.Module:
        """The bare model a user loads from an exported state_dict (default: the whole method)."""
        return self


def check_clusters(k: int, n: int, key: str) -> None:
    """A clustering method asked for more clusters than it has samples is refused before any training."""
    if k > n:
        from dist_cluster.config import ConfigError
        raise ConfigError(f"{key}={k} clusters, but the training data has only {n} samples; use {key} <= {n}")


def total_loss(out: dict[str, Any], stage: Stage) -> torch.Tensor:
    terms = [stage.weight(k[5:]) * v for k, v in out.items() if k.startswith("loss/") and stage.weight(k[5:]) != 0]
    if not terms:
        raise ValueError(f"stage '{stage.name}' has no active loss term; method returned {sorted(out)}")
    return torch.stack([t.float() for t in terms]).sum()
