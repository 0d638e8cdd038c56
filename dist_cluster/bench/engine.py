"""The training engine's cost per step against a hand-written loop over the same method, batches and optimiser.

Engine: recipes/cgmcr2_digits.py for a fixed number of steps, seconds per step from its metrics.jsonl (start-up
and the end-of-run report excluded). Loop: the same config's method, loader and Adam in this process, one
stage, no DeepSpeed. Exactness: both losses are finite.
"""
from __future__ import annotations

import math
import os
import statistics
import tempfile
import time

import torch

from dist_cluster.bench.recipe_runs import run_recipe, seconds_per_step
from dist_cluster.bench.registry import Options, Row

RECIPE = "cgmcr2_digits"


class _Quiet:
    def log(self, *a, **kw):
        pass


def hand_loop(overrides: list[str], steps: int, run_dir: str) -> tuple[float, float]:
    """(median seconds per step after 2 warm-up steps, last loss)."""
    from dist_cluster.distributed import DistEnv
    from dist_cluster.engine.context import RunContext
    from dist_cluster.launch import build_config, build_method, load_recipe
    from dist_cluster.methods.base import total_loss
    cfg = build_config(load_recipe(RECIPE), overrides)
    torch.manual_seed(cfg.seed)
    method = build_method(cfg)
    ctx = RunContext(cfg=cfg, env=DistEnv(), run_dir=run_dir, device=torch.device("cpu"), logger=_Quiet())
    stage = method.stages()[0]
    method.on_stage_start(stage, ctx, resumed=False)
    loader = method.build_loaders(ctx)
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=cfg.optim.lr,
                           weight_decay=cfg.optim.weight_decay)
    times, loss, epoch = [], float("nan"), 0
    while len(times) < steps:
        for batch in loader.epoch(epoch):
            batch.pop("_skipped", None)
            t = time.perf_counter()
            out = total_loss(method(batch, stage), stage)
            opt.zero_grad()
            out.backward()
            opt.step()
            times.append(time.perf_counter() - t)
            loss = float(out.detach())
            if len(times) >= steps:
                break
        epoch += 1
    return statistics.median(times[2:]), loss


def run(opts: Options) -> list[Row]:
    torch.set_num_threads(opts.threads)
    steps = 12 if opts.quick else 60
    # no evaluation or end-of-run report: only the steps are timed
    common = ["engine.eval_every=0", "ckpt.every_steps=0", "method.warmup_epochs=100", "method.finetune_epochs=0",
              "engine.final_eval=false", "method.baselines=[]"]
    with tempfile.TemporaryDirectory() as tmp:
        engine_s, loop_s = [], []
        loss = float("nan")
        for r in range(opts.repeats):
            run_dir = os.path.join(tmp, f"engine{r}")
            run_recipe(RECIPE, common + [f"engine.max_steps={steps}", "engine.log_every=1"], run_dir,
                       threads=opts.threads)
            engine_s.append(seconds_per_step(run_dir))
            s, loss = hand_loop(common, steps, os.path.join(tmp, f"loop{r}"))
            loop_s.append(s)
    return [Row("engine", f"training step, {RECIPE} warm-up stage, {steps} steps", f"1×{opts.threads}",
                statistics.median(engine_s), "hand-written loop", statistics.median(loop_s), "",
                math.isfinite(loss), "DeepSpeed engine vs plain Adam loop")]
