"""Build a UNIC method on scikit-learn digits pixel features and train it with a plain optimiser loop
(the engine is tested elsewhere; these tests are about UNIC's own logic)."""
from __future__ import annotations

import torch

from dist_cluster.config import ExperimentConfig
from dist_cluster.data import DataConfig
from dist_cluster.distributed import DistEnv
from dist_cluster.engine.context import RunContext
from dist_cluster.methods.base import total_loss
from dist_cluster.methods.unic.config import UnicConfig
from dist_cluster.methods.unic.method import UnicMethod


class ListLogger:
    def __init__(self):
        self.records = []

    def log(self, record, step, kind="train", echo=False):
        self.records.append((kind, dict(record)))


def digits_config(root: str, run_dir: str = "", seed: int = 0, batch_size: int = 128, **method) -> ExperimentConfig:
    kw = dict(num_clusters=10, tau1=10, tau2=400, head_hidden=256, feature_norm="zscore", epochs=30)
    cfg = ExperimentConfig(name="unic_digits", method=UnicConfig(**(kw | method)), seed=seed, run_dir=run_dir)
    cfg.data = DataConfig(name="digits_pixels", root=root, batch_size=batch_size, eval_batch_size=512)
    return cfg


def make_method(cfg, rank: int = 0, world: int = 1):
    torch.manual_seed(cfg.seed)
    method = UnicMethod(cfg)
    ctx = RunContext(cfg=cfg, env=DistEnv(rank=rank, world_size=world), run_dir=cfg.run_dir,
                     device=torch.device("cpu"), logger=ListLogger())
    return method, ctx


def train(method, ctx, epochs: int, lr: float = 1e-3, start_epoch: int = 0) -> list[dict]:
    stage = method.stages()[0]
    method.on_stage_start(stage, ctx, resumed=start_epoch > 0)
    loader = method.build_loaders(ctx)
    opt = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=lr)
    method.train()
    history = []
    for epoch in range(start_epoch, start_epoch + epochs):
        for batch in loader.epoch(epoch):
            batch.pop("_skipped", None)
            out = method(batch, stage)
            loss = total_loss(out, stage)
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append({"loss": loss.item()} | {k: float(v.detach()) for k, v in out.items()})
    return history
