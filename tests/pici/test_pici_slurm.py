"""PICI through `python slurm/submit.py recipe=...` on the local one-node Slurm (tools/slurm_local): a 2-task
job trains all three stages and writes its summary and figures."""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "slurm"))
from slurm_utils import wait_done  # noqa: E402

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm_env(local_slurm):
    return dict(os.environ)


def test_pici_digits_job_on_two_tasks_trains_every_stage(slurm_env, tmp_path):
    import submitit
    run_dir = tmp_path / "r"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "slurm", "submit.py"), "recipe=pici_digits",
                          "site=localtest", "mem_gb=8", f"run_dir={run_dir}", f"data.root={tmp_path / 'data'}",
                          "data.train_samples=480", "data.batch_size=24", "method.pretrain_epochs=1",
                          "method.train_epochs=1", "method.boost_epochs=1", "engine.eval_every=0",
                          "method.tsne_samples=0", "method.recon_images=4"],
                         capture_output=True, text=True, timeout=180, env=slurm_env, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    job_id = re.search(r"submitted job (\d+)", res.stdout).group(1)
    os.environ.update(SLURM_CONF=slurm_env["SLURM_CONF"], PATH=slurm_env["PATH"])
    job = submitit.SlurmJob(folder=run_dir / "slurm" / "%j", job_id=job_id, tasks=[0, 1])
    summaries = wait_done(job, 900)
    assert [s["world_size"] for s in summaries] == [2, 2] and summaries[0]["global_step"] == 30
    summary = json.load(open(run_dir / "summary.json"))
    assert {"acc", "nmi", "ari"} <= set(summary["metrics"])
    stages = {json.loads(line).get("stage") for line in open(run_dir / "metrics.jsonl")}
    assert {"pretrain", "train", "boost"} <= stages
    assert any(p.endswith("pici_reconstructions.png") for p in summary["figures"])
