"""SPEC U8 (d): UNIC fine-tuning only EfficientNet-Lite0's last stage + conv_head on Fashion-MNIST images
(600 training images at 48 px for one epoch, so that it fits a CPU test; SPEC asks for 5k for 1-2 epochs):
gradients reach only those parameters, the loss decreases, and k-means on the re-extracted features does not
get worse by more than 0.02 (the analogue of the paper's Fig. 7)."""

import numpy as np
import pytest
import torch
from unic_helpers import ListLogger

from dist_cluster.config import ExperimentConfig
from dist_cluster.data import DataConfig
from dist_cluster.data.features import LITE_MEAN, LITE_STD
from dist_cluster.data.sources import ArraySource, fmnist_source
from dist_cluster.data.writer import write_shards
from dist_cluster.distributed import DistEnv
from dist_cluster.engine.context import RunContext
from dist_cluster.methods.base import total_loss
from dist_cluster.methods.unic.config import UnicConfig
from dist_cluster.methods.unic.method import UnicMethod

torch.set_num_threads(1)   # faster than 2 on a shared 2-core machine


def _subset(split, n, out):
    src = fmnist_source(split)
    sub = ArraySource(src.images[:n], src.labels[:n], src.class_names, {"name": f"fmnist_{split}_{n}"})
    return write_shards(sub, out, "train" if split == "train" else "eval", samples_per_shard=n, progress=False)


@pytest.mark.slow
def test_last_stage_finetuning_trains_only_the_tail_and_keeps_kmeans(tmp_path):
    train_m, eval_m = _subset("train", 600, str(tmp_path / "d")), _subset("test", 400, str(tmp_path / "d"))
    method_cfg = UnicConfig(input="images", backbone="efficientnet_lite0", img_size=48, train_blocks=1,
                            num_clusters=10, tau1=10, tau2=200, head_hidden=256, eval_transform="plain",
                            eval_kmeans=True, epochs=1)
    cfg = ExperimentConfig(name="unic_d", method=method_cfg, run_dir=str(tmp_path / "run"), seed=0)
    cfg.data = DataConfig(name="fmnist", train=train_m, eval=eval_m, image_size=48, in_chans=3, batch_size=30,
                          eval_batch_size=200, mean=LITE_MEAN, std=LITE_STD, scale=(0.5, 1.0))
    torch.manual_seed(0)
    method = UnicMethod(cfg)
    ctx = RunContext(cfg=cfg, env=DistEnv(), run_dir=cfg.run_dir, device=torch.device("cpu"), logger=ListLogger())
    stage = method.stages()[0]
    method.on_stage_start(stage, ctx, resumed=False)
    before = method.evaluate(ctx)
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=5e-4)
    intended = {n for n, p in method.named_parameters() if p.requires_grad}
    last = len(method.backbone.model._blocks) - 1
    assert intended and all(n.startswith(("head.", f"backbone.model._blocks.{last}.", "backbone.model._conv_head",
                                          "backbone.model._bn1")) for n in intended)
    method.train()
    losses = []
    for b, batch in enumerate(method.build_loaders(ctx).epoch(0)):
        batch.pop("_skipped", None)
        loss = total_loss(method(batch, stage), stage)
        opt.zero_grad()
        loss.backward()
        if b == 0:
            reached = {n for n, p in method.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
            assert reached == intended
        opt.step()
        losses.append(loss.item())
    after = method.evaluate(ctx)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses
    assert after["kmeans_acc"] >= before["kmeans_acc"] - 0.02, (before, after)
