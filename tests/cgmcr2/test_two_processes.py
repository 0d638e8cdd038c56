"""The digits recipe on 1 process and under torchrun on 2 processes with the same global batch.

Each rank reads its own part of the shuffled stream and draws its own Gumbel noise, so the two runs agree in
distribution only (the loss itself is checked exactly in test_loss.py): the final metrics must match within
seed noise (measured: ACC spread ≈ 0.05 over seeds on digits)."""
import json
import os
import subprocess
import sys

import pytest
from inprocess import run_recipe_in_process

from dist_cluster.distributed.spawn import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPE = os.path.join(ROOT, "recipes", "cgmcr2_digits.py")
ENV = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")


def run(nproc: int, run_dir, *overrides):
    args = [f"run_dir={run_dir}", "engine.progress=false", *overrides]
    if nproc == 1:        # in this process: the interpreter's start-up is much of a 1-process run's time
        res = run_recipe_in_process(RECIPE, args, cwd=ROOT)
    else:
        res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node",
                              str(nproc), "--master_port", str(free_port()), RECIPE, *args],
                             env=ENV, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


@pytest.mark.slow
def test_two_processes_reach_the_one_process_metrics(tmp_path):
    # seeds 0-2 measured: ACC 1 vs 2 processes differs by 0.04-0.09 after 10 fine-tune epochs, as after 30
    short = ["method.warmup_epochs=10", "method.finetune_epochs=10"]
    out = run(2, tmp_path / "p2", "data.batch_size=256", *short)     # global batch 512 = the 1-process batch
    run(1, tmp_path / "p1", "data.batch_size=512", *short)
    assert "KMeans (scikit-learn)" in out                     # the end-of-run table is printed by rank 0
    t1 = json.load(open(tmp_path / "p1" / "results_table.json"))["rows"]
    t2 = json.load(open(tmp_path / "p2" / "results_table.json"))["rows"]
    assert t1["kmeans"]["acc"] == pytest.approx(t2["kmeans"]["acc"])    # same inputs, same baseline
    assert abs(t1["cgmcr2"]["acc"] - t2["cgmcr2"]["acc"]) < 0.1
    assert abs(t1["cgmcr2"]["nmi"] - t2["cgmcr2"]["nmi"]) < 0.08
    for t in (t1, t2):
        assert t["cgmcr2"]["acc"] > 0.6 and t["cgmcr2_sc"]["acc"] > 0.6
