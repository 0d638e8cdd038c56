"""tools/gpu_check.py's harness on the CPU: rows written as they finish, a row past its deadline killed and
skipped, a failed launch reported by its error line (not the launcher's banner)."""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from gpu_check_rows import Report, error_line, stream_rows  # noqa: E402

TORCHRUN_STDERR = """\
[rank1]: Traceback (most recent call last):
[rank1]:   File "/repo/dist_cluster/engine/setup.py", line 40, in build_optimizer
[rank1]:     raise ValueError(f'Optimizer {name} not found in registry')
[rank1]: ValueError: Optimizer nosuchopt not found in registry
E1204 19:12:03.862000 7300 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 1) local_rank: 1
Traceback (most recent call last):
  File "/venv/lib/python3.12/site-packages/torch/distributed/launcher/api.py", line 386, in launch_agent
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
recipes/cgmcr2_digits.py FAILED
------------------------------------------------------------
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def test_error_line_is_the_exception_not_the_banner():
    assert error_line(TORCHRUN_STDERR, 1) == "ValueError: Optimizer nosuchopt not found in registry"
    assert error_line("warming up\nerror: bad value 'two' for 'engine.max_steps'\n[ERROR] [launch.py:325] "
                      "exits with return code = 2\n", 2) == "error: bad value 'two' for 'engine.max_steps'"
    assert error_line("", -9) == "exit code -9"


WORKER = """
import sys, time
print("GPU_CHECK START a", flush=True)
print('GPU_CHECK ROW {"key": "a", "section": "kernel", "check": "row a", "result": "1 ms"}', flush=True)
print("GPU_CHECK START b", flush=True)
time.sleep(60)
"""


def test_a_worker_row_past_its_limit_is_skipped_and_the_worker_killed(tmp_path):
    out = str(tmp_path / "rows.jsonl")
    report = Report(out, time.monotonic(), echo=False)
    names = {k: ("kernel", f"row {k}") for k in "abc"}
    t = time.monotonic()
    left = stream_rows([sys.executable, "-c", WORKER], dict(os.environ), str(tmp_path), list("abc"), names,
                       row_limit=1.5, deadline=t + 30, report=report, log=str(tmp_path / "w"))
    assert time.monotonic() - t < 10 and left == ["c"]     # a new worker would run c
    rows = [json.loads(x) for x in open(out)]
    assert [(r["check"], r["status"]) for r in rows] == [("row a", "ok"), ("row b", "skipped")]
    assert "over its 2 s limit" in rows[1]["error"] and rows[0]["t"] <= rows[1]["t"]
    assert "| row b |" in open(tmp_path / "rows.md").read()


def _pids_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_dry_run_writes_rows_as_they_finish_kills_overruns_and_names_errors(tmp_path):
    out = tmp_path / "rows.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "gpu_check.py"), "--dry-run", "--keep",
                          "--out", str(out), "--select", "kNN|probe"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_while_running = 0
    while p.poll() is None:            # rows appear while the check still runs
        if out.exists():
            seen_while_running = max(seen_while_running, sum(1 for _ in open(out)))
        time.sleep(0.2)
    stdout, stderr = p.communicate()
    assert p.returncode == 0, stdout[-3000:] + stderr[-3000:]
    rows = {r["check"].split(" (expected")[0]: r for r in map(json.loads, open(out))}
    assert seen_while_running >= 2 and len(rows) == 5     # machine, kNN, data, two probes
    assert rows["exact kNN 3,000×64, k 10: knn() / plain (q @ X.T).topk"]["status"] == "ok"
    over = rows["probe: a launch past its 4 s limit"]
    assert over["status"] == "skipped" and "killed at its deadline" in over["error"]
    fail = rows["probe: a failing launch"]
    assert fail["status"] == "FAIL" and fail["error"] == "error: bad value 'two' for 'engine.max_steps': expected int"
    table = stdout[stdout.index("| check "):]                           # the table at the end
    assert "| probe: a failing launch (expected FAIL) " in table and "| FAIL |" in table
    work = stdout.rsplit("work folder ", 1)[1].split()[0]
    try:
        assert not _pids_mentioning(work), "a killed launch left processes behind"
    finally:
        subprocess.run(["rm", "-rf", work])
