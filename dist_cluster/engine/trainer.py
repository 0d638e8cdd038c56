"""The training loop: stages, gradient accumulation, per-step lr, NaN guard, logging, checkpoints, evaluation.

It knows methods only through dist_cluster.methods.base (Method, Stage, Loader, total_loss).
"""
from __future__ import annotations

import json
import os
import time

import torch
import torch.distributed as dist

from dist_cluster import checkpoint as ckpt
from dist_cluster.checkpoint import rng
from dist_cluster.distributed import all_reduce_sum, barrier, is_dist
from dist_cluster.engine.setup import build_optimizer, deepspeed_config, stage_scheduler
from dist_cluster.methods.base import total_loss


class NonFiniteLossError(RuntimeError):
    pass


def _to(batch: dict, device, dtype):
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device)
            out[k] = v.to(dtype) if v.is_floating_point() else v
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], torch.Tensor):
            out[k] = [t.to(device).to(dtype) if t.is_floating_point() else t.to(device) for t in v]
        else:
            out[k] = v
    return out


class Trainer:
    def __init__(self, cfg, method, ctx):
        self.cfg, self.method, self.ctx = cfg, method, ctx
        self.ckpt_dir = os.path.join(ctx.run_dir, "checkpoints")
        self.stages = method.stages()

    def _init_engine(self, load_universal: bool):
        import deepspeed
        self.optimizer = build_optimizer(self.method, self.cfg.optim)
        ds_cfg = deepspeed_config(self.cfg, self.ctx.env.world_size, load_universal)
        self.engine, _, _, _ = deepspeed.initialize(model=self.method, optimizer=self.optimizer, config=ds_cfg)
        self.ctx.engine = self.engine
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.cfg.engine.precision, torch.float32)

    def _resume_point(self):
        """Newest complete checkpoint, and whether it was written at another world size.

        ZeRO stage 0 checkpoints hold whole tensors and load at any world size; sharded ZeRO 1-3 checkpoints are
        converted to DeepSpeed's universal format first.
        """
        tag = ckpt.latest(self.ckpt_dir) if self.cfg.ckpt.resume else None
        if tag is None:
            return None, False, False
        meta = ckpt.read_meta(self.ckpt_dir, tag)
        if meta["world_size"] == self.ctx.env.world_size:
            return tag, False, False
        if meta.get("zero_stage", 0) == 0:
            return tag, True, False
        if self.ctx.env.is_main:
            ckpt.to_universal(self.ckpt_dir, tag)
        barrier()
        return tag, True, True

    def _client_state(self, **pos) -> dict:
        return {"global_step": self.ctx.global_step, "micro_step": self.micro, "world_size": self.ctx.env.world_size,
                "zero_stage": self.cfg.engine.zero_stage} | pos

    def _save(self, stage_index: int, epoch: int, batch_in_epoch: int) -> None:
        ckpt.save(self.engine, self.ckpt_dir, self.ctx.global_step,
                  self._client_state(stage_index=stage_index, epoch=epoch, batch_in_epoch=batch_in_epoch,
                                     samples_in_epoch=batch_in_epoch * self.bs_global),
                  self.ctx.env.rank, self.ctx.env.world_size, self.cfg.ckpt.keep_last)

    def _load(self, tag: str, world_changed: bool, universal: bool) -> dict:
        load_tag = f"{tag}_universal" if universal else tag
        path, client = self.engine.load_checkpoint(self.ckpt_dir, tag=load_tag)
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load checkpoint {self.ckpt_dir}/{load_tag}")
        own = ckpt.load_rank_state(self.ckpt_dir, tag, self.ctx.env.rank)
        if own is not None and not world_changed:
            rng.restore(own["rng"])
        elif world_changed:   # another world size: same global sample offset, fresh per-rank RNG
            torch.manual_seed(self.cfg.seed * 1000 + self.ctx.env.rank + client["global_step"])
            client["batch_in_epoch"] = client["samples_in_epoch"] // self.bs_global
        return client

    def _check_finite(self, loss, out, where: str) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0])
        all_reduce_sum(bad)
        if bad.item() > 0:
            terms = {k: float(v) for k, v in out.items() if k.startswith("loss/")}
            last = ckpt.latest(self.ckpt_dir)
            raise NonFiniteLossError(f"non-finite loss at {where} (terms on rank {self.ctx.env.rank}: {terms}); "
                                     f"stopping. Last good checkpoint: "
                                     f"{os.path.join(self.ckpt_dir, last) if last else 'none'}")

    def _log_train(self, out: dict, loss: torch.Tensor) -> None:
        keys = ["loss"] + sorted(k for k, v in out.items() if isinstance(v, torch.Tensor) and v.numel() == 1)
        vals = torch.stack([loss.detach().float()] + [out[k].detach().float().reshape(()) for k in keys[1:]]).cpu()
        all_reduce_sum(vals)
        vals /= self.ctx.env.world_size
        rec = dict(zip(keys, vals.tolist()))
        rec["lr"] = max(g["lr"] for g in self.optimizer.param_groups)
        rec |= {"stage": self.ctx.stage.name, "epoch": self.ctx.epoch}
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

    def fit(self) -> dict:
        cfg, ctx, env = self.cfg, self.ctx, self.ctx.env
        t_start = time.time()
        loader = self.method.build_loaders(ctx)
        accum = cfg.engine.grad_accum
        n_batches = loader.batches_per_epoch() // accum * accum
        if n_batches == 0:
            raise ValueError(f"an epoch has {loader.batches_per_epoch()} batches per rank, fewer than "
                             f"engine.grad_accum={accum}: lower data.batch_size or the number of processes")
        self.bs_global = cfg.data.batch_size * env.world_size
        tag, world_changed, universal = self._resume_point()
        self._init_engine(universal)
        self.micro, stage_index, epoch, start_batch, resumed_from = 0, 0, 0, 0, None
        if tag is not None:
            client = self._load(tag, world_changed, universal)
            ctx.global_step, self.micro = client["global_step"], client["micro_step"]
            stage_index, epoch, start_batch = client["stage_index"], client["epoch"], client["batch_in_epoch"]
            resumed_from = tag
            if start_batch >= n_batches:
                epoch, start_batch = epoch + 1, 0
            if ctx.env.is_main:
                print(f"resumed from {self.ckpt_dir}/{tag} at step {ctx.global_step} (epoch {epoch}, batch "
                      f"{start_batch})" + (f" (written at world size {ckpt.read_meta(self.ckpt_dir, tag)['world_size']})"
                     if world_changed else ""), flush=True)
        first_epoch = [sum(s.epochs for s in self.stages[:i]) for i in range(len(self.stages))]
        while stage_index < len(self.stages) - 1 and epoch >= first_epoch[stage_index] + self.stages[stage_index].epochs:
            stage_index += 1
        max_steps = cfg.engine.max_steps
        self.bar = None
        metrics, stopped = {}, False
        self.method.train()
        for si in range(stage_index, len(self.stages)):
            stage = ctx.stage = self.stages[si]
            sched = stage_scheduler(self.optimizer, stage, cfg, n_batches // accum)
            mid_stage = resumed_from is not None and (epoch > first_epoch[si] or start_batch > 0)
            self.method.on_stage_start(stage, ctx, resumed=mid_stage)
            for epoch in range(max(epoch, first_epoch[si]), first_epoch[si] + stage.epochs):
                ctx.epoch = epoch
                skipped = torch.zeros(1)
                self.bar = self._progress(n_batches, start_batch, f"{stage.name} ep {epoch}")
                for b, batch in enumerate(loader.epoch(epoch, start_batch), start=start_batch):
                    if b >= n_batches:
                        break
                    skipped += int(batch.pop("_skipped", 0))
                    boundary = (self.micro + 1) % accum == 0
                    if boundary:   # lr for this update, counted from the stage's first update
                        sched.step_update(((epoch - first_epoch[si]) * n_batches + b) // accum)
                    out = self.engine(_to(batch, self.engine.device, self.dtype), stage)
                    loss = total_loss(out, stage)
                    self._check_finite(loss, out, f"stage {stage.name}, epoch {epoch}, batch {b}")
                    self.engine.backward(loss)
                    self.engine.step()
                    self.micro += 1
                    if boundary:
                        ctx.global_step += 1
                        if self.bar is not None:
                            self.bar.update(accum)
                            self.bar.set_postfix(loss=f"{loss.item():.4g}")
                        if ctx.global_step % cfg.engine.log_every == 0:
                            self._log_train(out, loss)
                        if cfg.ckpt.every_steps and ctx.global_step % cfg.ckpt.every_steps == 0:
                            self._save(si, epoch, b + 1)
                        if max_steps and ctx.global_step >= max_steps:
                            stopped = True
                            break
                start_batch = 0
                if self.bar is not None:
                    self.bar.close()
                    self.bar = None
                if stopped:
                    self._save(si, epoch, b + 1)
                    break
                all_reduce_sum(skipped)
                ctx.logger.log({"data/skipped": int(skipped.item()), "epoch": epoch}, ctx.global_step, kind="data",
                               echo=skipped.item() > 0)
                if cfg.ckpt.save_at_epoch_end:
                    self._save(si, epoch, n_batches)
                if cfg.engine.eval_every and (epoch + 1) % cfg.engine.eval_every == 0:
                    metrics = self.evaluate()
            if stopped:
                break
        final = self.evaluate() if not (metrics and not stopped and cfg.engine.eval_every
                                        and (ctx.epoch + 1) % cfg.engine.eval_every == 0) else metrics
        figures = self.method.write_figures(ctx) or []
        summary = {"metrics": final, "global_step": ctx.global_step, "epochs_done": ctx.epoch + 1,
                   "stopped_at_max_steps": stopped, "resumed_from": resumed_from,
                   "world_size": env.world_size, "wall_time_s": round(time.time() - t_start, 2), "figures": figures}
        if env.is_main:
            with open(os.path.join(ctx.run_dir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)
        return summary

    def _progress(self, total: int, start: int, desc: str):
        if not (self.ctx.env.is_main and self.cfg.engine.progress):
            return None
        from tqdm import tqdm
        return tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True, leave=False)
