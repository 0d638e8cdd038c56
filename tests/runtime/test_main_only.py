"""Rank-0-only work (report, baselines, figures) never times out the other ranks' training group."""
import datetime
import json
import os
import time

import pytest
import torch.distributed as dist
from dist_utils import run_world
from toy_runs import SHORT, run_toy

from dist_cluster.distributed import main_only


def _slow_rank0(rank, world, seconds):
    short = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=seconds / 4))   # "training" group

    def report():
        time.sleep(seconds)
        return {"rows": 3}
    out = main_only(report)
    dist.barrier(group=short)       # the next collective of the short-timeout group, after rank 0's work
    return out


def _fails_on_rank0(rank, world):
    def report():
        raise ValueError("no baselines")
    try:
        main_only(report)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "no error"


def test_other_ranks_wait_past_the_groups_timeout_and_get_rank0s_result():
    assert run_world(_slow_rank0, 2, 12.0) == [{"rows": 3}, {"rows": 3}]   # a 3 s group: its connect has margin


def test_an_error_on_rank0_reaches_every_rank_at_once():
    t = time.monotonic()
    out = run_world(_fails_on_rank0, 2)
    assert out[0] == "ValueError: no baselines" and "rank 0 failed" in out[1] and "no baselines" in out[1]
    assert time.monotonic() - t < 120


@pytest.mark.slow
def test_a_report_slower_than_the_collective_timeout_ends_the_run_cleanly(tmp_path):
    # engine.dist_timeout_min=0.2: a collective waits 12 s at most; rank 0's report takes 20 s. The timeout also
    # bounds the group's start-up (gloo's full-mesh connect), which took over 3 s on a loaded 2-core machine
    res = run_toy(tmp_path, *SHORT, "engine.dist_timeout_min=0.2", "method.report_sleep=20", nproc=2)
    assert res.returncode == 0
    summary = json.load(open(os.path.join(tmp_path, "summary.json")))
    assert summary["world_size"] == 2 and summary["metrics"]
