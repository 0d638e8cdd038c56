"""The engine under real launchers: python, torchrun (2 gloo ranks), DeepSpeed ZeRO 0/2/3, kill and resume."""
import json
import os
import subprocess
import sys

import pytest
import torch
from toy_runs import ENV, RECIPE, SHORT, final_weights, run_toy, train_losses

from dist_cluster import checkpoint as ckpt
from dist_cluster.distributed.spawn import free_port


@pytest.mark.parametrize("zero", [0, 2, 3])
def test_one_and_two_processes_give_the_same_loss_curve(tmp_path, zero):
    # Same global batch (32 = 1 x 32 = 2 x 16): the curves agree to float32 reduction-order noise.
    run_toy(tmp_path / "w1", *SHORT, f"engine.zero_stage={zero}", "data.batch_size=32")
    run_toy(tmp_path / "w2", *SHORT, f"engine.zero_stage={zero}", "data.batch_size=16", nproc=2)
    a, b = train_losses(tmp_path / "w1"), train_losses(tmp_path / "w2")
    assert len(a) == len(b) > 10 and [s for s, _ in a] == [s for s, _ in b]
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-4


def test_run_dir_holds_config_metrics_summary_and_checkpoints(tmp_path):
    run_toy(tmp_path, *SHORT, "engine.precision=bf16")
    for name in ("config.yaml", "command.txt", "git.txt", "metrics.jsonl", "summary.json", "figures", "checkpoints"):
        assert os.path.exists(tmp_path / name), name
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["metrics"]["acc"] > 0.8       # bf16 still learns digits
    assert "engine:\n" in open(tmp_path / "config.yaml").read()


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    res = run_toy(tmp_path, *SHORT, "ckpt.every_steps=5", "method.nan_at_step=8", ok=False)
    assert res.returncode != 0
    assert "non-finite loss" in res.stderr and "step000000005" in res.stderr
    d = str(tmp_path / "checkpoints")
    assert ckpt.latest(d) == "step000000005"
    assert torch.load(os.path.join(d, "step000000005", "rank0.pt"), weights_only=True)["rank"] == 0


def test_deepspeed_launcher_runs_the_same_recipe_on_two_ranks(tmp_path):
    launcher = os.path.join(os.path.dirname(sys.executable), "deepspeed")
    res = subprocess.run([launcher, "--num_gpus", "2", "--master_port", str(free_port()), RECIPE,
                          f"run_dir={tmp_path}", "method.epochs1=1", "method.epochs2=0", "data.batch_size=16"],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "deepspeed world=2" in open(tmp_path / "command.txt").read()
    assert json.load(open(tmp_path / "summary.json"))["world_size"] == 2


def test_gradient_accumulation_matches_the_larger_batch_and_keeps_last_k(tmp_path):
    run_toy(tmp_path / "big", *SHORT, "data.batch_size=32", "ckpt.every_steps=10", "ckpt.keep_last=2")
    run_toy(tmp_path / "acc", *SHORT, "data.batch_size=16", "engine.grad_accum=2")
    a, b = final_weights(tmp_path / "big"), final_weights(tmp_path / "acc")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    assert json.load(open(tmp_path / "acc" / "summary.json"))["global_step"] == 112   # optimizer steps
    assert len(ckpt.complete_tags(str(tmp_path / "big" / "checkpoints"))) == 2


def test_hooks_run_in_order_and_a_resume_replays_only_the_unfinished_epoch(tmp_path):
    run_toy(tmp_path, *SHORT, "method.log_hooks=true", "engine.max_steps=70")
    run_toy(tmp_path, *SHORT, "method.log_hooks=true")
    events = [json.loads(x) for x in open(tmp_path / "hooks.jsonl")]
    names = [e[0] for e in events]
    # 56 steps an epoch: stage 1 = epoch 0, stage 2 = epoch 1; the first run stops at step 70 inside epoch 1
    assert events[:2] == [["stage_start", "head_only", 0], ["epoch_start", 0, 0]]
    assert ["stage_start", "all", 56] in events and ["epoch_start", 1, 56] in events
    assert ["stage_start", "all", 70] in events and ["epoch_start", 1, 70] in events   # the resumed epoch
    assert names.count("train_end") == 2 and events[-1] == ["train_end", 112]
    steps = [e[1] for e in events if e[0] == "step_end"]
    assert steps == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110]
    losses = dict(train_losses(tmp_path))
    assert all(abs(losses[e[1]] - e[2]) < 1e-5 for e in events if e[0] == "step_end" and e[1] in losses)
