"""The GPU memory-layout decision forced on, on CPU: DeepSpeed starts and FEC trains (parameters keep their
layout; only image batches go channels_last)."""
import json
import os

import pytest
import torch
from dist_utils import run_world
from fec_tiny_data import tiny_overrides, write_image_folder


def _ds_start(rank, world, what, root):
    import deepspeed

    from dist_cluster.distributed import resolve
    from dist_cluster.distributed.process_group import init_distributed
    init_distributed(resolve())
    if what == "conv":   # the cause, as DeepSpeed sees it: a channels_last 4×4 kernel cannot be viewed as bytes
        model = torch.nn.Conv2d(5, 8, 4, 4).to(memory_format=torch.channels_last)
        try:
            deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                 config={"train_batch_size": 1})
        except RuntimeError as e:
            return str(e)
        return "started"
    from dist_cluster.engine import trainer as trainer_mod
    from dist_cluster.engine.context import RunContext
    from dist_cluster.launch import build_config, build_method, load_recipe
    from dist_cluster.logging import MetricLogger
    trainer_mod.channels_last_batches = lambda cfg, method, device: True   # what a CUDA device would decide
    cfg = build_config(load_recipe("fec_small"), tiny_overrides(root, os.path.join(root, "data"),
                                                                 os.path.join(root, "run"))
                       + ["engine.max_steps=2", "method.epochs=1", "method.num_classes=3"])
    torch.manual_seed(cfg.seed)
    method = build_method(cfg)
    ctx = RunContext(cfg=cfg, env=resolve(), run_dir=cfg.run_dir, device=torch.device("cpu"),
                     logger=MetricLogger(cfg.run_dir, enabled=True))
    trainer = trainer_mod.Trainer(cfg, method, ctx)
    summary = trainer.fit()
    ctx.logger.close()
    layouts = {n: p.is_contiguous() for n, p in method.named_parameters()}
    return {"channels_last": trainer.channels_last, "steps": summary["global_step"], "contiguous": layouts}


def test_deepspeed_refuses_channels_last_conv_weights():
    msg = run_world(_ds_start, 1, "conv", "")[0]
    assert "stride(-1) must be 1" in msg, msg


@pytest.mark.slow
def test_fec_trains_with_the_gpu_layout_decision_forced_on(tmp_path):
    root = write_image_folder(tmp_path / "images")
    out = run_world(_ds_start, 1, "fec", str(root), threads=2)[0]
    assert out["channels_last"] and out["steps"] == 2
    assert all(out["contiguous"].values())
    rows = [json.loads(x) for x in open(os.path.join(root, "run", "metrics.jsonl"))]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2]
