"""A small supervised MLP on scikit-learn's digits: the engine's test subject (two stages, two groups)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from dist_cluster.eval import cluster_metrics, gather_in_index_order
from dist_cluster.methods.base import Method, Stage


def knob(default):
    """A test's fault-injection or pacing option: not part of the run's identity, so a resume may change it."""
    return field(default=default, metadata={"may_change": True})


@dataclass
class ToyConfig:
    target: ClassVar[str] = "toy_method:ToyMethod"
    hidden: int = 32
    epochs1: int = 1
    epochs2: int = 2
    nan_at_step: int = knob(-1)          # inject a NaN loss at this optimizer step (tests the guard)
    nan_grad_at_step: int = knob(-1)     # a finite loss whose gradient is NaN at this step
    log_hooks: bool = knob(False)        # write every hook call to run_dir/hooks.jsonl
    step_sleep: float = knob(0.0)        # slow each step down so a test can kill the run mid-epoch
    # Every training step from this process's wait_from_step-th on waits until wait_for_file exists (at most
    # 300 s): a test holds the run mid-training for as long as it needs, instead of racing it with a sleep.
    wait_for_file: str = knob("")
    wait_from_step: int = knob(1)
    report_sleep: float = knob(0.0)      # a slow end-of-run report (rank 0's write_figures), in seconds


class DigitsLoader:
    """Equal batches per rank from an epoch-seeded global permutation (the data layer's semantics)."""

    def __init__(self, x, y, batch_size, seed, rank, world):
        self.x, self.y, self.bs, self.seed, self.rank, self.world = x, y, batch_size, seed, rank, world

    def batches_per_epoch(self):
        return len(self.x) // (self.bs * self.world)

    def epoch(self, epoch, start_batch=0):
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        perm = torch.randperm(len(self.x), generator=g)
        gb = self.bs * self.world
        for b in range(start_batch, self.batches_per_epoch()):
            idx = perm[b * gb + self.rank * self.bs: b * gb + (self.rank + 1) * self.bs]
            yield {"feature": self.x[idx], "label": self.y[idx], "index": idx, "_skipped": torch.tensor(0)}


WAIT_LIMIT_S = 300.0


def wait_for_file(path: str) -> None:
    """Block until `path` exists. Bounded: a test that never creates it fails the run instead of hanging it."""
    import os
    import time
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"method.wait_for_file: {path} did not appear within {WAIT_LIMIT_S:.0f} s")
        time.sleep(0.05)


class _NanGrad(torch.autograd.Function):
    """Adds 0 to the loss; its backward returns NaN (a finite loss with a damaged gradient)."""

    @staticmethod
    def forward(ctx, x):
        return x * 0

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


class ToyMethod(Method):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        m = cfg.method
        self.body = nn.Sequential(nn.Linear(64, m.hidden), nn.Tanh())
        self.head = nn.Linear(m.hidden, 10)
        d = load_digits()
        self.x = torch.tensor(d.data, dtype=torch.float32) / 16.0
        self.y = torch.tensor(d.target, dtype=torch.long)

    def stages(self):
        m = self.cfg.method
        return [Stage("head_only", m.epochs1, train=("head",), sched="constant"),
                Stage("all", m.epochs2, train=("body", "head"), loss_weights={"ce": 1.0, "l2": 0.1})]

    def param_groups(self):
        return {"body": list(self.body.parameters()), "head": list(self.head.parameters())}

    def on_stage_start(self, stage, ctx, resumed):
        self.hook_log("stage_start", stage.name, ctx.global_step)

    def on_epoch_start(self, epoch, ctx):
        self.hook_log("epoch_start", epoch, ctx.global_step)

    def on_step_end(self, step, out, ctx):
        if step % 10 == 0:
            self.hook_log("step_end", step, round(out["loss"], 6))

    def on_train_end(self, ctx):
        self.hook_log("train_end", ctx.global_step)

    def hook_log(self, *event):
        """Rank 0 appends each hook call to <run_dir>/hooks.jsonl (the engine test reads the order)."""
        import json
        import os
        if self.cfg.method.log_hooks and int(os.environ.get("RANK", 0)) == 0:
            with open(os.path.join(self.cfg.resolved_run_dir(), "hooks.jsonl"), "a") as f:
                f.write(json.dumps(event) + "\n")

    def write_figures(self, ctx):
        if self.cfg.method.report_sleep and ctx.env.is_main:   # as the methods' reports: rank 0's work
            import time
            time.sleep(self.cfg.method.report_sleep)
        return []

    def build_loaders(self, ctx):
        return DigitsLoader(self.x, self.y, self.cfg.data.batch_size, self.cfg.seed, ctx.env.rank,
                            ctx.env.world_size)

    def forward(self, batch, stage):
        logits = self.head(self.body(batch["feature"]))
        out = {"loss/ce": F.cross_entropy(logits, batch["label"]),
               "loss/l2": logits.float().pow(2).mean() * 0.01,
               "acc": (logits.argmax(1) == batch["label"]).float().mean()}
        if self.cfg.method.step_sleep:
            import time
            time.sleep(self.cfg.method.step_sleep)
        step = self._step_counter = getattr(self, "_step_counter", 0) + 1
        if self.training and self.cfg.method.wait_for_file and step >= self.cfg.method.wait_from_step:
            wait_for_file(self.cfg.method.wait_for_file)
        if self.training and step == self.cfg.method.nan_at_step:
            out["loss/ce"] = out["loss/ce"] * float("nan")
        if self.training and step == self.cfg.method.nan_grad_at_step:
            out["loss/ce"] = out["loss/ce"] + _NanGrad.apply(logits.sum())
        return out

    @torch.no_grad()
    def evaluate(self, ctx):
        r, w = ctx.env.rank, ctx.env.world_size
        idx = torch.arange(r, len(self.x), w)
        pred = self.head(self.body(self.x[idx].to(self.head.weight.dtype))).argmax(1)
        idx, pred = gather_in_index_order(idx, pred)
        return cluster_metrics(self.y[idx], pred)
