"""Recoveries that hold: a kill (SIGKILL) or interrupt (SIGINT) mid-epoch, a save cut short, another world size.

Each asserts what the user sees and that the newest good checkpoint was not touched by the fault. (Slurm
requeue: tests/slurm/test_slurm_jobs.py, which needs the local Slurm.)
"""
import json
import signal
import subprocess
import time

import pytest
import torch
from toy_runs import ENV, SHORT, final_weights, run_toy, toy_cmd, tree_hashes

from dist_cluster import checkpoint as ckpt


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every recovery must end equal to."""
    run_dir = tmp_path_factory.mktemp("reference")
    run_toy(run_dir, "ckpt.every_steps=7", "ckpt.keep_last=3")
    return final_weights(run_dir)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_signal_mid_epoch_then_resume_ends_bitwise_equal(reference, tmp_path, sig):
    common = ["ckpt.every_steps=7", "ckpt.keep_last=3"]
    # The run holds before step 71 (mid-epoch 1; step 70's checkpoint complete) until `go` exists, which it
    # never does: the signal always lands mid-epoch, however slow the machine.
    go = tmp_path / "go"
    # SIG_DFL in the child: a background job (e.g. `make test &`) inherits SIGINT ignored, and Python keeps that
    proc = subprocess.Popen(toy_cmd(tmp_path, *common, f"method.wait_for_file={go}", "method.wait_from_step=71"),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 600   # only bounds a broken run; the run itself waits for the signal
    while ckpt.latest(str(tmp_path / "checkpoints")) != "step000000070":
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("the run never completed step 70's checkpoint:\n" + proc.communicate()[1][-3000:])
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in err
    d = str(tmp_path / "checkpoints")
    newest = ckpt.latest(d)
    assert ckpt.read_meta(d, newest)["params_finite"] is True
    resumed = run_toy(tmp_path, *common)
    assert f"resumed from {d}/{newest}" in resumed.stdout
    got = final_weights(tmp_path)
    assert reference.keys() == got.keys() and all(torch.equal(reference[k], got[k]) for k in reference)


def test_interrupted_save_leaves_previous_checkpoint_selected(tmp_path):
    run_toy(tmp_path, *SHORT, "engine.max_steps=20", "ckpt.every_steps=10")
    d = tmp_path / "checkpoints"
    good = ckpt.latest(str(d))
    before = tree_hashes(d / good)
    half = d / "step000000030"          # what a kill during the next save leaves: files, no COMPLETE
    half.mkdir()
    (half / "mp_rank_00_model_states.pt").write_bytes(b"truncated")
    assert ckpt.latest(str(d)) == good
    res = run_toy(tmp_path, *SHORT, "ckpt.keep_last=10")
    assert f"resumed from {d}/{good}" in res.stdout
    assert tree_hashes(d / good) == before


@pytest.mark.parametrize("zero", [0, 2])
def test_two_process_checkpoint_resumes_on_one_process(tmp_path, zero):
    run_toy(tmp_path, *SHORT, f"engine.zero_stage={zero}", "data.batch_size=16", "engine.max_steps=40", nproc=2)
    assert json.load(open(tmp_path / "summary.json"))["stopped_at_max_steps"]
    before = tree_hashes(tmp_path / "checkpoints" / "step000000040")
    res = run_toy(tmp_path, *SHORT, f"engine.zero_stage={zero}", "data.batch_size=32", "ckpt.keep_last=10")
    assert "written at world size 2" in res.stdout
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["world_size"] == 1 and summary["resumed_from"] == "step000000040"
    assert summary["global_step"] == 112      # 2 epochs x 56 global batches, continued from the same sample offset
    assert summary["metrics"]["acc"] > 0.85
    after = tree_hashes(tmp_path / "checkpoints" / "step000000040")
    assert {k: v for k, v in after.items() if k in before} == before   # only the universal copy is added beside
