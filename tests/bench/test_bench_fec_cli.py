"""`python -m dist_cluster.bench.fec` with CPU-sized flags: inference and training rows beside resnet50, with
the paper's ratio."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fec_bench_command_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "dist_cluster.bench.fec", "--px", "32", "--batch", "2", "--iters", "1",
                          "--warmup", "0", "--repeats", "1", "--threads", "1", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith("| fec ")]
    assert [("inference" in r, "train" in r) for r in rows] == [(True, False), (False, True)]
    assert all("timm resnet50" in r and "paper V100 FPS ratio 0.86" in r for r in rows)
    assert os.path.exists(tmp_path / "fec.jsonl")
