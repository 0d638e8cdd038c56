"""D1/D1b: the non-finite guard decides before the optimizer step and never saves damaged weights."""
import json
import os

import pytest
from toy_runs import SHORT, all_checkpoints_finite, run_toy, tree_hashes

from dist_cluster import checkpoint as ckpt


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """Four good steps, a checkpoint after each (the user's earlier work)."""
    run_dir = tmp_path_factory.mktemp("guard")
    run_toy(run_dir, *SHORT, "ckpt.every_steps=1", "engine.max_steps=4", "ckpt.keep_last=10")
    return run_dir


def test_nan_gradient_with_finite_loss_stops_before_the_step(good_run, tmp_path):
    """D1: the gradient is checked, not only the loss; the step and its save never happen."""
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(good_run, run_dir)
    before = tree_hashes(run_dir / "checkpoints")
    res = run_toy(run_dir, *SHORT, "ckpt.every_steps=1", "ckpt.keep_last=10", "method.nan_grad_at_step=2",
                  "ckpt.allow_changed=[method.nan_grad_at_step]", ok=False)
    assert res.returncode != 0
    assert "non-finite loss or gradient" in res.stderr and "step 6" in res.stderr
    d = str(run_dir / "checkpoints")
    assert f"Newest checkpoint with finite parameters: {d}/step000000005" in res.stderr
    assert "loss/ce" in res.stderr                       # the terms are named
    assert ckpt.latest(d) == "step000000005"              # step 6 was neither applied nor saved
    after = tree_hashes(run_dir / "checkpoints")
    assert {k: v for k, v in after.items() if k in before and k != "latest"} == \
        {k: v for k, v in before.items() if k != "latest"}   # earlier checkpoints byte-identical
    assert all_checkpoints_finite(d)


def test_huge_learning_rate_never_saves_non_finite_weights(good_run, tmp_path):
    """D1 with optim.lr=1e9: whatever the run does, no checkpoint holds NaN/Inf and earlier ones are intact."""
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(good_run, run_dir)
    before = tree_hashes(run_dir / "checkpoints")
    res = run_toy(run_dir, *SHORT, "ckpt.every_steps=1", "ckpt.keep_last=20", "optim.lr=1e9",
                  "ckpt.allow_changed=[optim.lr]", ok=False)
    d = str(run_dir / "checkpoints")
    assert all_checkpoints_finite(d)
    for tag in ckpt.complete_tags(d):
        assert ckpt.read_meta(d, tag).get("params_finite", True) is True
    if res.returncode != 0:
        assert "non-finite" in res.stderr and "Newest checkpoint with finite parameters" in res.stderr
    after = tree_hashes(run_dir / "checkpoints")
    assert all(after.get(k) == v for k, v in before.items() if k != "latest")


def test_skip_nonfinite_skips_counted_steps_then_finishes(tmp_path):
    res = run_toy(tmp_path, *SHORT, "method.nan_grad_at_step=3", "engine.skip_nonfinite=1")
    assert "skipping step 3" in res.stdout
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["skipped_steps"] == 1
    assert all_checkpoints_finite(str(tmp_path / "checkpoints"))


def test_skip_nonfinite_needs_zero_stage_0_and_fp32(tmp_path):
    res = run_toy(tmp_path, *SHORT, "engine.skip_nonfinite=2", "engine.zero_stage=2", ok=False)
    assert res.returncode == 2 and "engine.skip_nonfinite needs engine.zero_stage=0" in res.stderr
    assert not os.path.exists(tmp_path / "config.yaml")


def test_cgmcr2_with_a_huge_learning_rate_says_it_collapsed(tmp_path):
    """D1b: lr=1e9 leaves every weight finite but every embedding 0: the run says so instead of a bare ACC."""
    from inprocess import run_recipe_in_process
    from toy_runs import ROOT
    res = run_recipe_in_process("cgmcr2_digits", [f"run_dir={tmp_path}", f"data.root={tmp_path / 'data'}",
                                                  "optim.lr=1e9", "engine.max_steps=20", "ckpt.every_steps=5",
                                                  "method.baselines=()"], cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "CgMCR² collapsed" in res.stdout and "the run diverged (lower optim.lr)" in res.stdout
    assert json.load(open(tmp_path / "summary.json"))["metrics"]["collapsed"] == 1
    assert all_checkpoints_finite(str(tmp_path / "checkpoints"))
