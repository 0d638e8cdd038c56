"""`scancel --signal=USR1` to a running submitit job on the local Slurm: every task saves after the current
step, the job requeues itself and ends with the weights of an uninterrupted run. After SIGTERM a task records
the stop and exits 143, leaving the requeue to Slurm."""
import os
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest
import torch
from slurm_utils import FAST, TOY, final_weights, wait_done
from toy_runs import run_toy

from dist_cluster.engine.preemption import StopRun
from slurm.job import _after_stop, read_history
from slurm.options import parse
from slurm.submit import plan, submit


@pytest.mark.slurm
@pytest.mark.slow
def test_usr1_saves_requeues_and_ends_equal_to_an_uninterrupted_run(local_slurm, tmp_path):
    # The job holds before step 5 (step 4's checkpoint complete) until `go` exists, which is created only once
    # both tasks have acknowledged the signal: it is always handled at the end of step 5.
    go = tmp_path / "go"
    common = ["engine.max_steps=12", "engine.final_eval=false", *FAST]
    opts = parse([f"recipe={TOY}", "site=localtest", f"run_dir={tmp_path}/job", f"method.wait_for_file={go}",
                  "method.wait_from_step=5", *common])
    (job,) = submit(opts, *plan(opts))
    run_toy(tmp_path / "straight", *common, nproc=2)   # the uninterrupted run, meanwhile, on the same 2 ranks
    step4 = tmp_path / "job" / "checkpoints" / "step000000004" / "COMPLETE"
    deadline = time.time() + 240   # only bounds a broken job
    while not step4.exists():
        assert time.time() < deadline and not job.done(), "the job never wrote its first checkpoint"
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", job.job_id], check=True, timeout=60)
    logs = [tmp_path / "job" / "slurm" / job.job_id / f"{job.job_id}_{r}_log.err" for r in (0, 1)]
    while not all("received SIGUSR1: saving" in p.read_text() for p in logs if p.exists()) \
            or not all(p.exists() for p in logs):
        assert time.time() < deadline and not job.done(), "the signal was not acknowledged by both tasks"
        time.sleep(0.2)
    go.touch()
    (summary, _) = wait_done(job, 300)
    history = read_history(tmp_path / "job")
    assert [h["event"] for h in history] == ["start", "stop", "requeue", "start", "end"], history
    stop = history[1]
    assert (stop["signal"], stop["global_step"]) == ("SIGUSR1", 5)
    assert stop["checkpoint"] == str(tmp_path / "job" / "checkpoints" / "step000000005")
    out0 = (tmp_path / "job" / "slurm" / job.job_id / f"{job.job_id}_0_log.out").read_text()
    assert f"received SIGUSR1 at step 5: saved {stop['checkpoint']}; exiting for requeue" in out0
    assert summary["requeue_count"] == 1 and summary["resumed_from"] == "step000000005"
    assert summary["global_step"] == 12
    a, b = final_weights(tmp_path / "job"), final_weights(tmp_path / "straight")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert os.path.exists(tmp_path / "job" / "summary.json")


def test_after_sigterm_a_task_records_the_stop_and_exits_143(tmp_path):
    stop = StopRun(signal.SIGTERM, 7, "/runs/x/checkpoints/step000000007")
    out = _after_stop(SimpleNamespace(global_rank=0, job_id="42"), str(tmp_path), stop, restarts=1)
    assert out is stop and out.code == 143
    (record,) = read_history(tmp_path)
    assert {k: record[k] for k in ("event", "signal", "job_id", "restart", "global_step", "checkpoint")} == \
        {"event": "stop", "signal": "SIGTERM", "job_id": "42", "restart": 1, "global_step": 7,
         "checkpoint": "/runs/x/checkpoints/step000000007"}
    # the other tasks only exit
    assert _after_stop(SimpleNamespace(global_rank=1, job_id="42"), str(tmp_path / "r1"), stop) is stop
    assert read_history(tmp_path / "r1") == []
