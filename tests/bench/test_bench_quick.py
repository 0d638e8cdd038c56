"""`python -m dist_cluster.bench --quick`: every case runs on small inputs and every exactness check holds."""
import os
import subprocess
import sys

import pytest

from dist_cluster.bench.registry import CASES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def quick_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    res = subprocess.run([sys.executable, "-m", "dist_cluster.bench", "--quick", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900, env=dict(os.environ, DS_ACCELERATOR="cpu"))
    return res, out


def _rows(stdout: str) -> list[dict]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:]]


def test_quick_bench_exits_0_and_every_exactness_check_holds(quick_table):
    res, out = quick_table
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = _rows(res.stdout)
    assert {r["case"] for r in rows} == set(CASES)
    checked = [r for r in rows if r["exact"] != "-"]
    assert checked and all(r["exact"] == "yes" for r in checked), [r for r in checked if r["exact"] != "yes"]
    for case in ("kmeans", "knn", "data", "coding_rate", "fec", "unic", "cluster_cli"):   # each checks a reference
        assert any(r["case"] == case and r["exact"] == "yes" for r in rows), case
    assert {f"{c}.jsonl" for c in CASES} <= set(os.listdir(out))
