"""Exact means exact: the kNN and k-means GEMMs run with TF32 off even in a process that trains with it on."""
import pytest
import torch

from dist_cluster import cpu_gemm
from dist_cluster.clustering import kmeans
from dist_cluster.neighbors.knn import knn
from dist_cluster.precision import exact_float32


@pytest.fixture
def tf32_on():
    mm, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    old = mm.allow_tf32, cudnn.allow_tf32, torch.get_float32_matmul_precision()
    mm.allow_tf32 = cudnn.allow_tf32 = True            # what dist_cluster.launch sets for training on CUDA
    torch.set_float32_matmul_precision("high")
    yield
    mm.allow_tf32, cudnn.allow_tf32 = old[:2]
    torch.set_float32_matmul_precision(old[2])


def _flags():
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision())


@pytest.fixture
def seen(monkeypatch):
    """The TF32 flags at every float32 GEMM (torch.mm / addmm / matmul and cpu_gemm.linear, oneDNN's on CPU,
    are looked up at call time)."""
    out = []
    for module, name in [(torch, "mm"), (torch, "addmm"), (torch, "matmul"), (cpu_gemm, "linear")]:
        real = getattr(module, name)

        def spy(*a, _real=real, **k):
            if a[0].dtype == torch.float32 if isinstance(a[0], torch.Tensor) else False:
                out.append(_flags())
            return _real(*a, **k)
        monkeypatch.setattr(module, name, spy)
    return out


@pytest.mark.parametrize("path", ["cpu", "device"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_knn_gemms_run_without_tf32(tf32_on, seen, metric, path):
    x = torch.randn(700, 16)
    knn(x, 5, metric=metric, chunk=256, gemm_dtype=None, path=path)
    assert seen and set(seen) == {(False, False, "highest")}
    assert _flags() == (True, True, "high")             # training's settings back after the call


def test_kmeans_gemms_run_without_tf32(tf32_on, seen):
    kmeans(torch.randn(3000, 8), 4, seed=0)
    assert seen and set(seen) == {(False, False, "highest")}
    assert _flags() == (True, True, "high")


def test_context_restores_on_error(tf32_on):
    with pytest.raises(ValueError), exact_float32():
        assert _flags() == (False, False, "highest")
        raise ValueError
    assert _flags() == (True, True, "high")
