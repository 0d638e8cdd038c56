"""The training loop: stages, epochs, gradient accumulation, the non-finite guard, logging, and when to save
(how to resume and save: resume_save.py).

It knows methods only through dist_cluster.methods.base (Method, Stage, Loader, total_loss, the hooks).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from itertools import islice
from types import SimpleNamespace

import torch

from dist_cluster import checkpoint as ckpt
from dist_cluster.data import skips
from dist_cluster.distributed import all_reduce_sum, main_only
from dist_cluster.engine.device_data import channels_last_batches, device_batches
from dist_cluster.engine.guard import FiniteGuard, NonFiniteLossError
from dist_cluster.engine.preemption import StopSignals
from dist_cluster.engine.resume_save import Position, ResumeAndSave
from dist_cluster.engine.setup import build_optimizer, deepspeed_config, stage_scheduler
from dist_cluster.engine.syncs import HostSyncCounter
from dist_cluster.methods.base import total_loss

__all__ = ["Trainer", "NonFiniteLossError"]


class Trainer(ResumeAndSave):
    def __init__(self, cfg, method, ctx):
        self.cfg, self.method, self.ctx = cfg, method, ctx
        self.ckpt_dir = os.path.join(ctx.run_dir, "checkpoints")
        self.stages = method.stages()
        self.first_epoch = [sum(s.epochs for s in self.stages[:i]) for i in range(len(self.stages))]
        self.bar, self.skipped_steps, self.data_skipped = None, 0, 0

    # ---- engine -------------------------------------------------------------------------------
    def _init_engine(self, load_universal: bool):
        import deepspeed
        cuda = self.ctx.device.type == "cuda"
        # batches only: parameters keep their layout (DeepSpeed views each as bytes, which needs stride(-1) == 1)
        self.channels_last = channels_last_batches(self.cfg, self.method, self.ctx.device)
        self.optimizer = build_optimizer(self.method, self.cfg.optim)
        ds_cfg = deepspeed_config(self.cfg, self.ctx.env.world_size, load_universal, self.batch_size)
        args = SimpleNamespace(device_rank=self.ctx.device.index) if cuda else None   # ranks may share a GPU
        self.engine, _, _, _ = deepspeed.initialize(args=args, model=self.method, optimizer=self.optimizer,
                                                    config=ds_cfg)
        if self.cfg.engine.compile:
            self.engine.compile(backend=self.cfg.engine.compile_backend)
        self.ctx.engine = self.engine
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.cfg.engine.precision, torch.float32)
        if self.ctx.env.world_size == 1 and self.cfg.engine.zero_stage == 0 and self.dtype == torch.float32:
            self.engine.enable_backward_allreduce = False   # one rank: the all-reduce is an identity that copies
        self.guard = FiniteGuard(self.method.parameters(), self.engine.device)

    # ---- the guard -----------------------------------------------------------------------------------------
    def _stop(self, what: str, out: dict) -> None:
        terms = {k: float(torch.as_tensor(v).detach()) for k, v in out.items() if k.startswith("loss/")}
        good = ckpt.latest_finite(self.ckpt_dir)
        raise NonFiniteLossError(
            f"{what} (terms on rank {self.ctx.env.rank}: {terms}); stopping with nothing saved. Newest checkpoint "
            f"with finite parameters: {os.path.join(self.ckpt_dir, good) if good else 'none'}")

    def _skip_update(self) -> None:
        """Let DeepSpeed finish the step (counters, zeroed gradients) without the optimizer's update."""
        opt = self.engine.optimizer
        opt.step = lambda *a, **k: None
        try:
            self.engine.step()
        finally:
            del opt.step

    # ---- the loop ------------------------------------------------------------------------------------------
    def _train_step(self, batch: dict, stage, where: str, boundary: bool, log: bool) -> tuple[list | None, dict]:
        # engine.count_syncs: host syncs of a non-log step's forward, backward and update (a GPU counts its own)
        counting = self.cfg.engine.count_syncs and not log
        syncs = HostSyncCounter(cpu=self.ctx.device.type == "cpu") if counting else contextlib.nullcontext()
        with syncs:
            out = self.engine(batch, stage)
            loss = total_loss(out, stage)
            self.guard.check_loss(loss)
            self.engine.backward(loss)
            keys = sorted(k for k, v in out.items() if isinstance(v, torch.Tensor) and v.numel() == 1) if log else []
            bad, vals = self.guard.reduce(loss, [out[k] for k in keys]) if boundary else (False, None)
            if bad:
                self.skipped_steps += 1
                if self.skipped_steps > self.cfg.engine.skip_nonfinite:
                    self._stop(f"non-finite loss or gradient at {where}, step {self.ctx.global_step + 1}", out)
                print(f"skipping step {self.ctx.global_step + 1} at {where}: non-finite loss or gradient "
                      f"({self.skipped_steps} of engine.skip_nonfinite={self.cfg.engine.skip_nonfinite})",
                      flush=True)
                self._skip_update()
            else:
                self.engine.step()
        if counting:
            self.max_step_syncs = max(getattr(self, "max_step_syncs", 0), syncs.total)
        return (vals, dict(zip(["loss"] + keys, vals))) if boundary else (None, out)

    def _run_epoch(self, si: int, epoch: int, start_batch: int, loader, sched, n_batches: int) -> bool:
        """One epoch of stage si from start_batch; True when engine.max_steps stopped the run inside it."""
        cfg, ctx, stage, accum = self.cfg, self.ctx, self.stages[si], self.cfg.engine.grad_accum
        ctx.epoch = epoch
        self.method.on_epoch_start(epoch, ctx)
        skipped = torch.zeros(1, dtype=torch.long)
        self.bar = self._progress(n_batches, start_batch, f"{stage.name} ep {epoch}")
        stream = device_batches(islice(loader.epoch(epoch, start_batch), n_batches - start_batch),
                                self.engine.device, self.dtype, self.channels_last)
        stopped, saved, b = False, False, start_batch - 1
        for b, (batch, n_skipped) in enumerate(stream, start=start_batch):
            skipped += n_skipped
            boundary = (self.micro + 1) % accum == 0
            if boundary:   # lr for this update, counted from the stage's first update
                sched.step_update(((epoch - self.first_epoch[si]) * n_batches + b) // accum)
            log = boundary and (ctx.global_step + 1) % cfg.engine.log_every == 0
            vals, rec = self._train_step(batch, stage, f"stage {stage.name}, epoch {epoch}, batch {b}",
                                         boundary, log)
            self.micro += 1
            if not boundary:
                continue
            ctx.global_step += 1
            self.method.on_step_end(ctx.global_step, rec, ctx)
            if self.bar is not None:
                self.bar.update(accum)
                self.bar.set_postfix(loss=f"{vals[0]:.4g}")
            if log:
                self._log_train(rec)
            saved = cfg.ckpt.every_steps and ctx.global_step % cfg.ckpt.every_steps == 0
            if saved:
                self._save(si, epoch, b + 1)
            if cfg.engine.max_steps and ctx.global_step >= cfg.engine.max_steps:
                stopped = True
                break
            if self.stop.requested:   # a signal reached some rank; all ranks see it after this same step
                break
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        skipped += skips.take()   # skips recorded in this process outside the batches (feature loading)
        all_reduce_sum(skipped)
        self.data_skipped += int(skipped.item())
        ctx.logger.log({"data/skipped": int(skipped.item()), "epoch": epoch}, ctx.global_step, kind="data",
                       echo=skipped.item() > 0)
        if stopped:
            self._save(si, epoch, b + 1)
            return True
        if self.stop.requested:
            if not saved:
                self._save(si, epoch, b + 1)
            path = os.path.join(self.ckpt_dir, ckpt.latest(self.ckpt_dir))
            raise self.stop.exit(ctx.global_step, path, ctx.env.is_main)
        stage_end = epoch + 1 == self.first_epoch[si] + stage.epochs
        if cfg.ckpt.save_at_epoch_end or (cfg.ckpt.save_at_stage_end and stage_end):
            self._save(si, epoch, n_batches)
        if cfg.engine.eval_every and (epoch + 1) % cfg.engine.eval_every == 0:
            self.last_eval = (epoch, self.evaluate())
        return False

    def _run_stage(self, si: int, pos: Position, loader, n_batches: int) -> bool:
        stage = self.ctx.stage = self.stages[si]
        sched = stage_scheduler(self.optimizer, stage, self.cfg, n_batches // self.cfg.engine.grad_accum)
        first = self.first_epoch[si]
        mid_stage = pos.resumed_from is not None and (pos.epoch > first or pos.start_batch > 0)
        self.method.on_stage_start(stage, self.ctx, resumed=mid_stage)
        for epoch in range(max(pos.epoch, first), first + stage.epochs):
            start, pos.start_batch = pos.start_batch, 0   # only the resumed epoch starts inside
            if self._run_epoch(si, epoch, start, loader, sched, n_batches):
                return True
        return False

    def fit(self) -> dict:
        t_start = time.time()
        self.batch_size = self.method.batch_size_per_rank(self.ctx.env.world_size)
        skips.reset()   # this run's skips only (several runs can share a process)
        loader = self.method.build_loaders(self.ctx)
        accum = self.cfg.engine.grad_accum
        n_batches = loader.batches_per_epoch() // accum * accum
        if n_batches == 0:
            raise ValueError(f"an epoch has {loader.batches_per_epoch()} batches per rank, fewer than "
                             f"engine.grad_accum={accum}: lower data.batch_size or the number of processes")
        self.bs_global = self.batch_size * self.ctx.env.world_size
        self.derived = {"batch_size_per_rank": self.batch_size, "global_batch": self.bs_global * accum,
                        "batches_per_epoch": n_batches} | self.method.derived()
        self.ctx.logger.log(self.derived, self.ctx.global_step, kind="derived", echo=False)
        pos = self._resume(n_batches)
        # the total steps now, an ETA after the first epoch (_progress)
        from dist_cluster.logging.progress import TrainingPlan
        self.plan = TrainingPlan(self.stages, n_batches // accum, self.ctx.global_step, self.bs_global * accum,
                                 self.ctx.env.is_main, self.cfg.engine.max_steps)
        self.last_eval, stopped = None, False
        self.method.train()
        # SIGTERM/SIGUSR1 while training: finish the step, save, exit (engine/preemption.py)
        self.stop = StopSignals(self.ctx.env.rank, self.ctx.env.world_size)
        self.stop.attach(self.guard)   # every rank: the guard's reduce carries the flag
        self.stop.install()
        try:
            for si in range(pos.stage_index, len(self.stages)):
                if self._run_stage(si, pos, loader, n_batches):
                    stopped = True
                    break
        finally:
            self.stop.restore()
            self.guard.remove()
        return self._finish(stopped, pos.resumed_from, t_start)

    def _finish(self, stopped: bool, resumed_from: str | None, t_start: float) -> dict:
        ctx = self.ctx
        fresh = self.last_eval is not None and self.last_eval[0] == ctx.epoch and not stopped
        report = self.cfg.engine.final_eval   # false: no final evaluation, table or figures (checks, benchmarks)
        final = self.last_eval[1] if fresh else (self.evaluate() if report else {})
        self.method.on_train_end(ctx)
        # rank 0 writes the report; the others wait on a group whose timeout covers it, not the training one's
        figures = (main_only(lambda: self.method.write_figures(ctx) or [])) if report else []
        summary = {"metrics": final, "global_step": ctx.global_step, "epochs_done": ctx.epoch + 1,
                   "stopped_at_max_steps": stopped, "resumed_from": resumed_from,
                   "world_size": ctx.env.world_size, "wall_time_s": round(time.time() - t_start, 2),
                   "data_skipped": self.data_skipped, "skipped_steps": self.skipped_steps, "derived": self.derived,
                   "figures": figures} | (self.method.summary() if ctx.env.is_main else {})
        if ctx.env.is_main:
            with open(os.path.join(ctx.run_dir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
        return summary

    # ---- reporting -----------------------------------------------------------------------------------------
    def _log_train(self, rec: dict) -> None:
        rec = dict(rec)
        rec["lr"] = max(g["lr"] for g in self.optimizer.param_groups)
        rec |= {"stage": self.ctx.stage.name, "epoch": self.ctx.epoch}
        rec |= {"diag/host_syncs_per_step": self.max_step_syncs} if hasattr(self, "max_step_syncs") else {}
        self.ctx.logger.log(rec, self.ctx.global_step, kind="train", echo=not self.bar)

    def evaluate(self) -> dict:
        self.method.eval()
        with torch.no_grad():
            metrics = self.method.evaluate(self.ctx) or {}
        self.method.train()
        if metrics:
            self.ctx.logger.log(metrics | {"epoch": self.ctx.epoch, "stage": self.ctx.stage.name},
                                self.ctx.global_step, kind="eval")
        return metrics

    def _progress(self, total: int, start: int, desc: str):
        if getattr(self, "plan", None) is not None:   # called at every epoch's start
            self.plan.epoch_start(self.ctx.stage.name, self.ctx.global_step)
        if not (self.ctx.env.is_main and self.cfg.engine.progress):
            return None
        from tqdm import tqdm
        return tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True, leave=False)
