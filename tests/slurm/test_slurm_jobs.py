"""Jobs on the real local Slurm (tools/slurm_local): training, requeue with exact continuation, arrays, refusals."""
import os
import re
import subprocess
import sys
import time

import pytest
import submitit
import torch
from slurm_utils import FAST, ROOT, TOY, final_weights, queue_ids, wait_done

from slurm.job import read_history
from slurm.options import parse
from slurm.submit import main, plan, submit

pytestmark = pytest.mark.slurm
SUBMIT = [sys.executable, os.path.join(ROOT, "slurm", "submit.py")]


def _submit(*argv):
    opts = parse([f"recipe={TOY}", "site=localtest", *argv])
    return submit(opts, *plan(opts))


@pytest.mark.slow
def test_two_task_job_trains_and_finishes(local_slurm, tmp_path):
    res = subprocess.run(SUBMIT + [f"recipe={TOY}", "site=localtest", f"run_dir={tmp_path}/r", "engine.max_steps=6",
                                   *FAST], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    job_id = re.search(r"submitted job (\d+)", res.stdout).group(1)
    job = submitit.SlurmJob(folder=tmp_path / "r" / "slurm" / "%j", job_id=job_id, tasks=[0, 1])
    summaries = wait_done(job, 300)
    assert [s["world_size"] for s in summaries] == [2, 2]
    assert [s["global_step"] for s in summaries] == [6, 6] and summaries[0]["requeue_count"] == 0
    folder = tmp_path / "r" / "slurm" / job_id
    assert (folder / "config.yaml").exists()
    for rank in (0, 1):
        assert f"task {rank}/2" in (folder / f"{job_id}_{rank}_log.out").read_text()
    assert "[train step 6]" in (folder / f"{job_id}_0_log.out").read_text()
    assert (tmp_path / "r" / "summary.json").exists()


def test_bad_recipe_or_override_fails_at_submission_and_submits_nothing(local_slurm, tmp_path, capsys):
    before = queue_ids()
    res = subprocess.run(SUBMIT + ["recipe=no_such_recipe", "site=localtest", f"run_dir={tmp_path}/r"],
                         capture_output=True, text=True, timeout=120)   # as a user runs it
    assert res.returncode == 2 and "unknown recipe 'no_such_recipe'" in res.stderr, res.stderr
    assert "submitted" not in res.stdout
    assert main([f"recipe={TOY}", "site=localtest", f"run_dir={tmp_path}/r", "optim.lrr=0.1"]) == 2
    assert "unknown config key 'optim.lrr'; closest valid keys: optim.lr" in capsys.readouterr().err
    assert not queue_ids() - before   # no new job (finished ones may age out of the list meanwhile)
    assert not os.path.exists(tmp_path / "r")


@pytest.mark.slow
def test_requeued_job_ends_with_the_weights_of_an_uninterrupted_one(local_slurm, tmp_path):
    # Both jobs hold before their 5th step (step 4's checkpoint complete) until `go` exists: the signal lands
    # while the job is surely mid-run, however slow the machine. A requeued start counts its steps afresh.
    go = tmp_path / "go"
    common = ["engine.max_steps=20", f"method.wait_for_file={go}", "method.wait_from_step=5", *FAST]
    (job,) = _submit(f"run_dir={tmp_path}/requeued", *common)
    (ref,) = _submit(f"run_dir={tmp_path}/straight", *common)   # queued behind; runs while the other waits
    first_ckpt = tmp_path / "requeued" / "checkpoints" / "step000000004" / "COMPLETE"
    deadline = time.time() + 240
    while not first_ckpt.exists():
        assert time.time() < deadline and not job.done(), "the job never wrote its first checkpoint"
        time.sleep(0.2)
    t_signal = time.time()
    job._interrupt(timeout=True)   # USR2 as at the time limit: checkpoint() + scontrol requeue
    go.touch()
    summaries = wait_done(job, 400)
    reference = wait_done(ref, 400)
    history = read_history(tmp_path / "requeued")
    assert [h["event"] for h in history] == ["start", "requeue", "start", "end"], history
    assert history[2]["restart"] == 1 and summaries[0]["requeue_count"] == 1
    assert summaries[0]["resumed_from"] is not None and summaries[0]["global_step"] == 20
    assert reference[0]["resumed_from"] is None and reference[0]["global_step"] == 20
    a, b = final_weights(tmp_path / "requeued"), final_weights(tmp_path / "straight")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    print(f"requeue timings: signal->requeue record {history[1]['time'] - t_signal:.1f} s, "
          f"requeue->restart {history[2]['time'] - history[1]['time']:.1f} s, "
          f"restart->end {history[3]['time'] - history[2]['time']:.1f} s")


@pytest.mark.slow
def test_sweep_submits_a_job_array_with_one_run_dir_each(local_slurm, tmp_path):
    jobs = _submit(f"run_dir={tmp_path}/sweep", "tasks_per_node=1", "optim.lr=0.01,0.05", "engine.max_steps=4",
                   *FAST)
    assert len(jobs) == 2
    array_ids = {j.job_id.split("_")[0] for j in jobs}
    assert len(array_ids) == 1 and [j.job_id.split("_")[1] for j in jobs] == ["0", "1"]
    results = [wait_done(j, 300)[0] for j in jobs]
    assert [r["global_step"] for r in results] == [4, 4]
    for lr, job in zip(("0.01", "0.05"), jobs):
        run_dir = tmp_path / "sweep" / f"optim.lr={lr}"
        assert f"lr: {lr}" in (run_dir / "config.yaml").read_text()
        assert read_history(run_dir)[0]["sweep"] == f"optim.lr={lr}"
        assert (tmp_path / "sweep" / "slurm" / job.job_id / "config.yaml").exists()
