"""recipes/unic_fmnist.py through the real launcher and DeepSpeed engine (on digits pixel features, so it
runs in seconds): 2 processes give the 1-process loss curve, and a run stopped mid-epoch resumes exactly."""
import json
import os
import subprocess
import sys

import pytest
from inprocess import run_recipe_in_process

from dist_cluster.distributed.spawn import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(ROOT, "recipes", "unic_fmnist.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _run(nproc, run_dir, data_root, *extra):
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                    "--nproc_per_node", str(nproc), "--master_port",
                                                    str(free_port())]
    cmd = launcher + [RECIPE, "data=digits_pixels", f"data.root={data_root}", f"run_dir={run_dir}",
                      "method.feature_norm=zscore", "method.tau2=400", "method.head_hidden=64", "method.epochs=2",
                      "engine.log_every=1", "engine.progress=false", f"data.batch_size={64 // nproc}", *extra]
    res = (run_recipe_in_process(RECIPE, cmd[2:], cwd=ROOT) if nproc == 1
           else subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900, cwd=ROOT))
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
    return lines


def _train(lines):
    return [(x["step"], x["loss"]) for x in lines if x["kind"] == "train"]


@pytest.mark.slow
def test_two_processes_follow_the_one_process_loss_curve(tmp_path):
    one = _run(1, str(tmp_path / "one"), str(tmp_path / "data"))
    two = _run(2, str(tmp_path / "two"), str(tmp_path / "data"))
    a, b = _train(one), _train(two)
    assert len(a) == len(b) == 2 * (1797 // 64)
    for (sa, la), (sb, lb) in zip(a, b):
        assert sa == sb and la == pytest.approx(lb, rel=1e-4, abs=1e-5)
    ev = lambda lines: [x for x in lines if x["kind"] == "eval"][-1]   # noqa: E731
    assert ev(one)["acc"] == pytest.approx(ev(two)["acc"], abs=2e-3)


@pytest.mark.slow
def test_stopped_run_resumes_with_its_mining_file_and_ends_like_an_uninterrupted_one(tmp_path):
    data = str(tmp_path / "data")
    full = _run(1, str(tmp_path / "full"), data)
    part = str(tmp_path / "part")
    _run(1, part, data, "engine.max_steps=20")          # stops inside epoch 0 and checkpoints there
    mining = os.listdir(os.path.join(part, "mining"))
    resumed = _run(1, part, data)
    assert os.listdir(os.path.join(part, "mining")) == mining
    a, b = dict(_train(full)), dict(_train(resumed))
    assert min(b) <= 21 and max(a) == max(b)
    for step in range(21, max(a) + 1):
        assert a[step] == pytest.approx(b[step], rel=1e-6, abs=1e-7)
    ev = lambda lines: [x for x in lines if x["kind"] == "eval"][-1]   # noqa: E731
    assert ev(full)["acc"] == ev(resumed)["acc"]
