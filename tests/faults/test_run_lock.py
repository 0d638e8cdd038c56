"""D2/D2b: one owner per run directory, and workers that die with their launcher."""
import os
import signal
import subprocess
import time

from toy_runs import ENV, SHORT, run_toy, toy_cmd


def _wait_for(pred, timeout=120.0):
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


def _pids_using(run_dir) -> list[int]:
    """Processes whose command line names the run directory."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if f"run_dir={run_dir}" in cmdline and int(pid) != os.getpid():
            out.append(int(pid))
    return out


def test_second_run_on_the_same_directory_is_refused_naming_the_holder(tmp_path):
    slow = subprocess.Popen(toy_cmd(tmp_path, *SHORT, "method.step_sleep=0.05"), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: _training(tmp_path))
        res = run_toy(tmp_path, *SHORT, "optim.lr=0.5", ok=False)
        assert res.returncode == 2
        assert "is in use by another run" in res.stderr and f"pid={slow.pid}" in res.stderr
        assert "Traceback" not in res.stderr
    finally:
        slow.kill()
        slow.wait()
    # A lock left by a killed run is no obstacle: flock died with its process.
    res = run_toy(tmp_path, *SHORT)
    assert "resumed from" in res.stdout or res.returncode == 0


def test_killing_the_launchers_process_group_ends_its_workers(tmp_path):
    # About 30 s of training left when the launcher is killed; the workers must be gone within 5 s.
    proc = subprocess.Popen(toy_cmd(tmp_path, *SHORT, "method.step_sleep=0.5", nproc=2), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert _wait_for(lambda: _training(tmp_path))
        workers = [p for p in _pids_using(tmp_path) if p != proc.pid]
        assert len(workers) >= 2
        os.killpg(proc.pid, signal.SIGKILL)          # the launcher only: workers run in their own sessions
        proc.wait()
        assert _wait_for(lambda: not [p for p in workers if os.path.exists(f"/proc/{p}")
                                      and open(f"/proc/{p}/stat").read().split()[2] != "Z"], timeout=5)
    finally:
        for p in _pids_using(tmp_path):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
