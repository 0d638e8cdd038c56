"""The Slurm form of the CLI: `python slurm/submit.py cli="DATA --method ... --k ..."` on the local one-node
Slurm (tools/slurm_local): bad arguments are refused before submitting, a 2-task job writes clusters.csv."""
import json
import os
import re
import subprocess
import sys

import pytest
from cli_helpers import ENV, ROOT, SHORT_CGMCR2, digits_files

sys.path.insert(0, os.path.join(ROOT, "tests", "slurm"))
from slurm_utils import wait_done  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm_env(local_slurm):
    return dict(ENV, SLURM_CONF=os.environ["SLURM_CONF"], PATH=os.environ["PATH"])


def submit(env, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "slurm", "submit.py"), *args], capture_output=True,
                          text=True, timeout=300, env=env, cwd=ROOT)


def test_bad_cli_arguments_are_refused_before_submitting(slurm_env, tmp_path):
    files = digits_files(tmp_path)
    res = submit(slurm_env, f"cli={files['X']} --method cgmcr2 --k 5000 --data-root {tmp_path / 'data'}",
                 "site=localtest")
    assert res.returncode == 2 and "k=5000 clusters but only N=1797 samples" in res.stderr
    assert "submitted job" not in res.stdout


def test_two_task_job_clusters_a_users_array(slurm_env, tmp_path):
    import submitit
    files, run_dir = digits_files(tmp_path), tmp_path / "run"
    cli = (f"{files['X']} --labels {files['y']} --method cgmcr2 --k 10 --run-dir {run_dir} "
           f"--data-root {tmp_path / 'data'} " + " ".join(SHORT_CGMCR2))
    res = submit(slurm_env, f"cli={cli}", "site=localtest", "mem_gb=8", "--no-wait")
    assert res.returncode == 0, res.stdout + res.stderr
    job_id = re.search(r"submitted job (\d+)", res.stdout).group(1)
    os.environ.update(SLURM_CONF=slurm_env["SLURM_CONF"], PATH=slurm_env["PATH"])
    wait_done(submitit.SlurmJob(folder=run_dir / "slurm" / "%j", job_id=job_id, tasks=[0, 1]), 900)
    rows = open(run_dir / "clusters.csv").read().splitlines()
    assert rows[0] == "index,cluster,confidence" and len(rows) == 1798
    summary = json.load(open(run_dir / "summary.json"))
    assert "cgmcr2" in summary["results_table"]["rows"]
