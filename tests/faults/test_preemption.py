"""SIGTERM / SIGUSR1 while training (Slurm's preemption and `scancel`): the current optimizer step finishes,
every rank saves, the run exits 128 + signal, and re-running the command ends bitwise equal to an uninterrupted
run. (Under the local Slurm: tests/slurm/test_slurm_signals.py.)"""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from dist_utils import run_world
from toy_runs import ENV, SHORT, final_weights, pids_using, run_toy, toy_cmd

from dist_cluster import checkpoint as ckpt
from dist_cluster.engine.guard import FiniteGuard
from dist_cluster.engine.preemption import HANDLED, StopSignals

COMMON = [*SHORT, "ckpt.every_steps=7", "engine.final_eval=false"]
# Step 35's checkpoint is written, then step 36 holds until `go` exists. A signal sent once that checkpoint is
# complete is handled at the end of step 36 (mid-epoch), whatever the machine's speed.
HOLD = 36
TAG = f"step{HOLD:09d}"
# torchrun kills its workers 30 s after forwarding a signal; the test's save must not race that
LAUNCH_ENV = dict(ENV, TORCH_ELASTIC_SHUTDOWN_TIMEOUT="600")


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Uninterrupted runs, by number of processes."""
    cache = {}

    def get(nproc: int):
        if nproc not in cache:
            run_dir = tmp_path_factory.mktemp(f"reference{nproc}")
            run_toy(run_dir, *COMMON, nproc=nproc)
            cache[nproc] = final_weights(run_dir)
        return cache[nproc]
    return get


def _wait(pred, proc, what: str, err=None, timeout: float = 300.0) -> None:
    """Wait for pred(); the deadline only bounds a broken run."""
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            tail = err.read_text()[-3000:] if err is not None and err.exists() else ""
            pytest.fail(f"{what} (exit {proc.returncode}):\n{tail}")
        time.sleep(0.05)


def _start_held(run_dir, nproc: int = 1, **popen):
    """Start the run and wait until step 35's checkpoint is complete: step 36 then holds until `go` exists."""
    out, err = run_dir / "launch.out", run_dir / "launch.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(toy_cmd(run_dir, *COMMON, f"method.wait_for_file={run_dir / 'go'}",
                                        f"method.wait_from_step={HOLD}", nproc=nproc),
                                env=LAUNCH_ENV, stdout=fo, stderr=fe, **popen)
    d = str(run_dir / "checkpoints")
    _wait(lambda: ckpt.latest(d) == "step000000035", proc, "the run never completed step 35's checkpoint", err)
    return proc, out, err


def _signal_held_run(run_dir, sig, nproc: int = 1, handled: bool = True):
    """Send `sig` to the held run's launched process, wait until every rank has acknowledged it, then let
    step 36 finish."""
    proc, out, err = _start_held(run_dir, nproc)
    proc.send_signal(sig)
    if handled:   # the handler's line on every rank that got the signal: it ran before step 36 can end
        _wait(lambda: err.read_text().count(f"received {sig.name}: saving") == nproc, proc,
              "the signal was not acknowledged", err)
        (run_dir / "go").touch()
    return proc, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_saves_after_the_current_step_and_exits_128_plus_signal(references, tmp_path, sig):
    proc, out, err = _signal_held_run(tmp_path, sig)
    assert proc.wait(timeout=300) == 128 + sig, err.read_text()[-3000:]
    d = str(tmp_path / "checkpoints")
    assert ckpt.latest(d) == TAG
    meta = ckpt.read_meta(d, TAG)
    assert (meta["global_step"], meta["epoch"], meta["batch_in_epoch"]) == (HOLD, 0, HOLD)
    assert f"received {sig.name} at step {HOLD}: saved {d}/{TAG}; exiting for requeue" in out.read_text()
    assert "Traceback" not in err.read_text()
    if sig == signal.SIGTERM:   # the resume is the same for either signal
        resumed = run_toy(tmp_path, *COMMON)
        assert f"resumed from {d}/{TAG}" in resumed.stdout
        ref, got = references(1), final_weights(tmp_path)
        assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


def test_a_second_signal_exits_at_once(tmp_path):
    proc, _, err = _signal_held_run(tmp_path, signal.SIGTERM, handled=False)
    _wait(lambda: "received SIGTERM: saving" in err.read_text(), proc, "the signal was not acknowledged", err)
    proc.send_signal(signal.SIGTERM)   # step 36 is still held: only the default action can end the run now
    assert proc.wait(timeout=120) == -signal.SIGTERM
    assert ckpt.latest(str(tmp_path / "checkpoints")) == "step000000035"


def test_two_processes_under_torchrun_stop_at_the_same_step_and_resume_equal(references, tmp_path):
    # SIGTERM to torchrun, which forwards it to both workers (its elastic agent's shutdown)
    proc, out, err = _signal_held_run(tmp_path, signal.SIGTERM, nproc=2)
    assert proc.wait(timeout=300) != 0   # torchrun reports the signal as its own failure
    d = str(tmp_path / "checkpoints")
    assert ckpt.latest(d) == TAG and ckpt.read_meta(d, TAG)["world_size"] == 2
    assert f"received SIGTERM at step {HOLD}: saved {d}/{TAG}; exiting for requeue" in out.read_text()
    assert os.path.exists(os.path.join(d, TAG, "rank1.pt"))
    resumed = run_toy(tmp_path, *COMMON, nproc=2)
    assert f"resumed from {d}/{TAG}" in resumed.stdout
    ref, got = references(2), final_weights(tmp_path)
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


def test_workers_whose_launcher_died_still_exit_at_once(tmp_path):
    # Their parent-death signal is SIGTERM (dist_cluster/distributed/lifetime.py). Taken only for a stop request
    # it would leave them waiting in step 36, which never ends: 300 s, then a TimeoutError on stderr.
    proc, _, err = _start_held(tmp_path, nproc=2, start_new_session=True)
    workers = pids_using(tmp_path, proc.pid)
    try:
        assert len(workers) == 2
        os.killpg(proc.pid, signal.SIGKILL)   # the launcher only: the workers run in their own sessions
        proc.wait()
        deadline = time.time() + 600   # only bounds a broken run
        while any(_alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.1)
        text = err.read_text()
        assert "TimeoutError" not in text, text[-3000:]
        assert not any(_alive(p) for p in workers)
        assert ckpt.latest(str(tmp_path / "checkpoints")) == "step000000035"
    finally:
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


PARENT_DEATH = """
import signal, sys
from dist_cluster.distributed.lifetime import die_with_parent
from dist_cluster.engine.preemption import StopSignals
die_with_parent()
stop = StopSignals()
stop.install()
if sys.argv[1] == "orphan":
    stop.parent = -1   # as after the launcher's exit: the kernel reparents the worker before it signals
signal.raise_signal(signal.SIGTERM)
print("still here", stop.signum)
"""


@pytest.mark.parametrize("case,code,out", [("orphan", -signal.SIGTERM, ""), ("forwarded", 0, "still here 15")])
def test_the_parent_death_signal_ends_a_worker_at_once(case, code, out):
    res = subprocess.run([sys.executable, "-c", PARENT_DEATH, case], env=ENV, capture_output=True, text=True,
                         timeout=120)
    assert (res.returncode, res.stdout.strip()) == (code, out), res.stderr[-2000:]


def _one_rank_signalled(rank, world):
    guard = FiniteGuard([], torch.device("cpu"))
    stop = StopSignals(rank, world)
    stop.attach(guard)
    assert stop.install()
    try:
        seen = []
        for step in range(3):
            if rank == 1 and step == 1:
                signal.raise_signal(signal.SIGUSR1)   # its handler has run when this returns
            guard.reduce(torch.tensor(1.0), [])
            seen.append(stop.requested)
        after = signal.getsignal(signal.SIGTERM)
    finally:
        stop.restore()
    return seen, stop.agreed_signal(), after == signal.SIG_DFL


def test_a_signal_on_one_rank_stops_every_rank_after_the_same_step():
    results = run_world(_one_rank_signalled, 2)
    assert [r[0] for r in results] == [[False, True, True]] * 2
    assert [r[1] for r in results] == [signal.SIGUSR1] * 2
    assert [r[2] for r in results] == [False, True]   # the signalled rank restored the default handlers


def test_handlers_are_restored_and_submitit_keeps_its_preemption_signal(monkeypatch):
    before = {s: signal.getsignal(s) for s in HANDLED}
    stop = StopSignals()
    assert stop.install()
    assert all(signal.getsignal(s) == stop._on_signal for s in HANDLED)
    stop.restore()
    assert {s: signal.getsignal(s) for s in HANDLED} == before
    # inside a submitit job whose preemption signal is USR1, that handler stays submitit's
    monkeypatch.setenv("SUBMITIT_FOLDER", "/nonexistent")
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    stop = StopSignals()
    stop.install()
    try:
        assert signal.getsignal(signal.SIGUSR1) == before[signal.SIGUSR1]
        assert signal.getsignal(signal.SIGTERM) == stop._on_signal
    finally:
        stop.restore()
