"""The trainer's checkpoint side: which checkpoint to resume from (at this or another world size), loading it with
each rank's RNG and data position, and saving one (never over the newest good one with non-finite parameters)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dist_cluster import checkpoint as ckpt
from dist_cluster.checkpoint import rng
from dist_cluster.distributed import barrier
from dist_cluster.engine.guard import params_finite


@dataclass
class Position:
    """Where training (re)starts: stage, global epoch, batch inside the epoch."""
    stage_index: int = 0
    epoch: int = 0
    start_batch: int = 0
    resumed_from: str | None = None


class ResumeAndSave:
    """Mixed into Trainer: uses its cfg, ctx, method, stages, engine and counters."""

    def _resume_point(self):
        """Newest complete checkpoint, and whether it was written at another world size.

        ZeRO stage 0 checkpoints hold whole tensors and load at any world size; sharded ZeRO 1-3 checkpoints are
        converted to DeepSpeed's universal format first.
        """
        tag = ckpt.resume_tag(self.ckpt_dir) if self.cfg.ckpt.resume else None   # verified; collective
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

    def _save(self, stage_index: int, epoch: int, batch_in_epoch: int) -> None:
        if not params_finite(self.method):   # never write damage over the newest good checkpoint
            self._stop(f"non-finite parameters after step {self.ctx.global_step}; not saved", {})
        state = {"global_step": self.ctx.global_step, "micro_step": self.micro, "world_size": self.ctx.env.world_size,
                 "zero_stage": self.cfg.engine.zero_stage, "stage_index": stage_index, "epoch": epoch,
                 "batch_in_epoch": batch_in_epoch, "samples_in_epoch": batch_in_epoch * self.bs_global,
                 "params_finite": True, "skipped_steps": self.skipped_steps}
        ckpt.save(self.engine, self.ckpt_dir, self.ctx.global_step, state, self.ctx.env.rank,
                  self.ctx.env.world_size, self.cfg.ckpt.keep_last)

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

    def _resume(self, n_batches: int) -> Position:
        tag, world_changed, universal = self._resume_point()
        self._init_engine(universal)
        self.micro, pos = 0, Position()
        if tag is not None:
            client = self._load(tag, world_changed, universal)
            self.ctx.global_step, self.micro = client["global_step"], client["micro_step"]
            self.skipped_steps = client.get("skipped_steps", 0)
            pos = Position(client["stage_index"], client["epoch"], client["batch_in_epoch"], tag)
            if pos.start_batch >= n_batches:
                pos.epoch, pos.start_batch = pos.epoch + 1, 0
            if self.ctx.env.is_main:
                written = ckpt.read_meta(self.ckpt_dir, tag)["world_size"]
                print(f"resumed from {self.ckpt_dir}/{tag} at step {self.ctx.global_step} (epoch {pos.epoch}, batch "
                      f"{pos.start_batch})" + (f" (written at world size {written})" if world_changed else ""),
                      flush=True)
        while (pos.stage_index < len(self.stages) - 1
               and pos.epoch >= self.first_epoch[pos.stage_index] + self.stages[pos.stage_index].epochs):
            pos.stage_index += 1
        return pos
