"""D2/D2b: one owner per run directory, and workers that die with their launcher."""
import os
import signal
import subprocess
import time

from toy_runs import ENV, SHORT, pids_using, run_toy, toy_cmd


def _wait_for(pred, timeout=300.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def _lock_held(run_dir) -> bool:
    path = os.path.join(run_dir, ".lock")
    return os.path.exists(path) and "pid=" in open(path).read()


def _training(run_dir) -> bool:
    return os.path.exists(os.path.join(run_dir, "metrics.jsonl"))


def test_second_run_on_the_same_directory_is_refused_naming_the_holder(tmp_path):
    # The first run holds at its first step until `go` exists, so it is alive while the second one tries.
    go = tmp_path / "go"
    first = subprocess.Popen(toy_cmd(tmp_path, *SHORT, f"method.wait_for_file={go}"), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: _lock_held(tmp_path) or first.poll() is not None)
        assert first.poll() is None, f"the first run exited with {first.returncode}"
        res = run_toy(tmp_path, *SHORT, "optim.lr=0.5", ok=False)
        assert res.returncode == 2
        assert "is in use by another run" in res.stderr and f"pid={first.pid}" in res.stderr
        assert "Traceback" not in res.stderr
        assert first.poll() is None     # still waiting for `go`: killed below while it holds the lock
    finally:
        first.kill()
        first.wait()
    # A lock left by a killed run is no obstacle: flock died with its process.
    res = run_toy(tmp_path, *SHORT)
    assert "resumed from" in res.stdout or res.returncode == 0


def test_killing_the_launchers_process_group_ends_its_workers(tmp_path):
    # The workers hold at their first step until `go` exists, which it never does: a worker that outlived its
    # launcher would wait there for 300 s, so any bound below that tells the two apart (60 s: room for a busy
    # machine to reap them).
    go = tmp_path / "go"
    proc = subprocess.Popen(toy_cmd(tmp_path, *SHORT, f"method.wait_for_file={go}", nproc=2), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # metrics.jsonl is opened after the ranks' rendezvous, so both workers already die with their parent
        assert _wait_for(lambda: _training(tmp_path) or proc.poll() is not None)
        assert proc.poll() is None, f"the launcher exited with {proc.returncode}"
        workers = [p for p in pids_using(tmp_path) if p != proc.pid]
        assert len(workers) >= 2
        os.killpg(proc.pid, signal.SIGKILL)          # the launcher only: workers run in their own sessions
        proc.wait()
        assert _wait_for(lambda: not [p for p in workers if os.path.exists(f"/proc/{p}")
                                      and open(f"/proc/{p}/stat").read().split()[2] != "Z"], timeout=60)
    finally:
        for p in pids_using(tmp_path):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
