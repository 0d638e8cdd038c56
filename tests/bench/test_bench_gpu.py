"""`python -m dist_cluster.bench --device cuda`: refused clearly without CUDA; its cases' code runs on a CPU
stand-in (tiny sizes, a fixed matmul rate), so what only a GPU can time is still exercised here."""
import os
import subprocess
import sys

import pytest
import torch

from dist_cluster.bench import gpu, gpu_kmeans, gpu_knn
from dist_cluster.bench.registry import Options
from dist_cluster.bench.report import table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_device_cuda_without_a_gpu_fails_clearly():
    for args in (["--device", "cuda"], ["knn", "--device", "cuda"]):
        res = subprocess.run([sys.executable, "-m", "dist_cluster.bench", *args], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 2 and "no CUDA device" in res.stderr, res.stderr
    res = subprocess.run([sys.executable, "-m", "dist_cluster.bench", "data", "--device", "cuda"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "choose from ['knn', 'kmeans']" in res.stderr


@pytest.fixture
def cpu_stand_in(monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(gpu, "require_cuda", lambda: torch.device("cpu"))
    monkeypatch.setattr(gpu, "synced", lambda fn: fn)
    monkeypatch.setattr(gpu, "matmul_rate", lambda dtype, device: 1e11)
    monkeypatch.setattr(gpu, "faiss_gpu", lambda: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(gpu_knn, "SIZES", {True: [(700, 32)]})
    monkeypatch.setattr(gpu_kmeans, "SIZES", {True: (3000, 8, 12)})


def test_gpu_cases_on_a_cpu_stand_in(cpu_stand_in):
    opts = Options(quick=True, repeats=1, device="cuda")
    rows = gpu_knn.run(opts) + gpu_kmeans.run(opts)
    assert [r.case for r in rows] == ["knn", "knn", "kmeans", "kmeans"]
    assert all(r.exact for r in rows), [r.note for r in rows]
    assert all(r.share and r.share > 0 for r in rows[::2]) and all(r.peer for r in rows)
    assert "of matmul rate" in table(rows) and "700/700 sampled lists" in rows[0].note
