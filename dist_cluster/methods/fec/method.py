"""FEC image classification (paper §5.1, supplement §B): the backbone trained with soft-target cross-entropy
under Mixup/CutMix and label smoothing (timm), optional EMA of the weights (timm ModelEmaV3) kept inside the
method so DeepSpeed checkpoints it; top-1/top-5 on the whole evaluation split, gathered across ranks.

Randomness that must not depend on the launch: Mixup draws from numpy's global RNG, so each call is seeded
from (seed, optimizer step, rank, first sample index) and the global state is restored afterwards.
"""
from __future__ import annotations

import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3

import dist_cluster.models  # noqa: F401  (registers fec_* with timm)
from dist_cluster.config import ConfigError
from dist_cluster.eval.passes import index_ordered_pass
from dist_cluster.methods.base import Method, Stage
from dist_cluster.methods.fec.config import FecClassificationConfig  # noqa: F401


class FecClassification(Method):
    convolutional = True   # NHWC (channels_last) on GPUs

    def __init__(self, cfg):
        super().__init__()
        from dist_cluster.data import Manifest
        self.cfg, m = cfg, cfg.method
        if m.model.startswith("fec") and (cfg.data.image_size <= 0 or cfg.data.image_size % 32):
            raise ConfigError(f"FEC needs data.image_size to be a multiple of 32, got {cfg.data.image_size} "
                              "(e.g. data.image_size=64 for Fashion-MNIST)")
        mixing = m.mixup > 0 or m.cutmix > 0
        if mixing and m.mixup_mode == "batch" and cfg.data.batch_size % 2:
            raise ConfigError("Mixup/CutMix in batch mode needs an even data.batch_size")
        if m.ema and cfg.engine.zero_stage == 3:
            raise ConfigError("method.ema needs whole weights on every rank; use engine.zero_stage <= 2")
        if m.depths and (not m.model.startswith("fec") or len(m.depths) != 4 or min(m.depths) < 1):
            raise ConfigError(f"method.depths is the number of blocks in each of an FEC model's 4 stages (each at "
                              f"least 1, e.g. [1,1,1,1]); got {list(m.depths)} for {m.model}")
        self._manifests = None
        n_cls = m.num_classes or Manifest.load(self.manifests()["train"]).num_classes
        kwargs = dict(assign_on=m.assign_on, agg_weight=m.agg_weight) if m.model.startswith("fec") else {}
        if m.depths:
            kwargs["depths"] = tuple(m.depths)
        self.model = timm.create_model(m.model, pretrained=False, num_classes=n_cls, in_chans=cfg.data.in_chans,
                                       drop_path_rate=m.drop_path, drop_rate=m.drop_rate, **kwargs)
        if m.grad_checkpointing:
            self.model.set_grad_checkpointing(True)
        self.ema = ModelEmaV3(self.model, decay=m.ema_decay).requires_grad_(False) if m.ema else None
        self.register_buffer("ema_step", torch.zeros((), dtype=torch.long))
        self.mixup = Mixup(mixup_alpha=m.mixup, cutmix_alpha=m.cutmix, prob=m.mixup_prob,
                           switch_prob=m.mixup_switch_prob, mode=m.mixup_mode, label_smoothing=m.smoothing,
                           num_classes=n_cls) if mixing else None
        self.train_loss = SoftTargetCrossEntropy() if mixing else (
            LabelSmoothingCrossEntropy(m.smoothing) if m.smoothing > 0 else torch.nn.CrossEntropyLoss())
        self.num_classes = n_cls
        self._rank, self._steps_done = 0, 0   # seeds Mixup/CutMix per (step, rank); set by the hooks
        self._alphas = [p for n, p in self.model.named_parameters() if n.endswith("sim_alpha")]

    def manifests(self) -> dict[str, str]:
        """Shards are looked at only when needed, so a run's model can be rebuilt where the data are not."""
        if self._manifests is None:
            from dist_cluster.data import prepare
            self._manifests = prepare(self.cfg.data)
        return self._manifests

    def stages(self) -> list[Stage]:
        return [Stage("train", self.cfg.method.epochs)]

    def build_loaders(self, ctx):
        from dist_cluster.data import build_train_loader
        return FirstIndex(build_train_loader(self.cfg.data, self.manifests()["train"], seed=self.cfg.seed,
                                             rank=ctx.env.rank, world_size=ctx.env.world_size, views="train"))

    def on_stage_start(self, stage, ctx, resumed: bool) -> None:
        self._rank, self._steps_done = ctx.env.rank, ctx.global_step
        if self.ema is not None:   # its stochastic-rounding generator must live where the weights now are
            device = next(self.ema.module.parameters()).device
            if self.ema._sr_generator.device != device:
                self.ema._sr_generator = torch.Generator(device=device).manual_seed(self.cfg.seed)

    @torch.no_grad()
    def on_step_end(self, step: int, out: dict, ctx) -> None:
        """EMA of the weights after each optimizer step."""
        self._steps_done = step
        if self.ema is not None and step > int(self.ema_step):
            self.ema.update(self.model, step=step)
            self.ema_step.fill_(step)

    @torch.compiler.disable   # host-side randomness and data-dependent boxes: nothing to compile
    def _mix(self, x, y, index, first: int | None = None):
        """Mixup/CutMix seeded from the batch's first sample index: `first` as the loader read it on the host,
        else from `index` (on a GPU that read waits for the device)."""
        if first is None:
            first = int(index[0]) if len(index) else 0
        seq = np.random.SeedSequence([self.cfg.seed, self._steps_done, self._rank, first])
        state = np.random.get_state()
        np.random.seed(int(seq.generate_state(1)[0]))
        try:
            return self.mixup(x, y)
        finally:
            np.random.set_state(state)

    def forward(self, batch: dict, stage: Stage) -> dict[str, torch.Tensor]:
        x, y = batch["image"], batch["label"]
        if self.training and self.mixup is not None:
            x, target = self._mix(x, y, batch["index"], batch.get("first_index"))
            logits = self.model(x)
            loss = self.train_loss(logits.float(), target)
        else:
            logits = self.model(x)
            loss = (self.train_loss if self.mixup is None else F.cross_entropy)(logits.float(), y)
        out = {"loss/ce": loss, "train_top1": (logits.argmax(1) == y).float().mean()}
        if self._alphas and self.cfg.engine.zero_stage < 3:   # A3: argmax on M equals argmax on σ(β+αM) while α > 0
            out["min_alpha"] = torch.stack([a.detach().float().reshape(()) for a in self._alphas]).min()
        return out

    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float]:
        from dist_cluster.data import build_eval_loader
        models = {"": self.model} | ({"ema_": self.ema.module} if self.ema is not None else {})
        param = next(self.model.parameters())
        k = min(5, self.num_classes)

        def step(batch):
            x = batch["image"].to(param.device, param.dtype)
            return {"label": batch["label"]} | {f"top_{n}": net(x).float().topk(k, dim=1).indices
                                                 for n, net in models.items()}
        res = index_ordered_pass(build_eval_loader(self.cfg.data, self.manifests()["eval"], rank=ctx.env.rank,
                                                   world_size=ctx.env.world_size, views="eval"), step)
        y, names, top = res["label"], list(models), [res[f"top_{n}"] for n in models]
        out = {"eval_samples": float(len(y))}
        for name, t in zip(names, top):
            hit = t == y.view(-1, 1)
            out[f"{name}top1"] = float(hit[:, 0].float().mean())
            out[f"{name}top{k}"] = float(hit.any(1).float().mean())
        return out

    def write_figures(self, ctx) -> list[str]:
        import os

        import skimage.data

        from dist_cluster.interpret import inspect_image, save_segment_figure
        net = self.export_module()
        if not hasattr(net, "stages") or not self.cfg.method.figure_photos:
            return []
        paths = []
        for photo in self.cfg.method.figure_photos:
            rgb, pyramid, _ = inspect_image(net, getattr(skimage.data, photo)(), self.cfg.method.figure_size,
                                            mean=self.cfg.data.mean or None, std=self.cfg.data.std or None)
            paths.append(save_segment_figure(rgb, pyramid, os.path.join(ctx.figures_dir, f"segments_{photo}.png"),
                                             f"{self.cfg.method.model} step {ctx.global_step}: {photo}"))
        return paths

    def export_module(self) -> torch.nn.Module:
        return self.model


class FirstIndex:
    """A training loader whose batches also carry `first_index`, their first global sample index as a Python
    int read before the batch moves to the device (the engine moves only tensors)."""

    def __init__(self, loader):
        self.loader = loader

    def batches_per_epoch(self) -> int:
        return self.loader.batches_per_epoch()

    def epoch(self, epoch: int, start_batch: int = 0):
        for b in self.loader.epoch(epoch, start_batch):
            yield b | {"first_index": int(b["index"][0]) if len(b["index"]) else 0}
