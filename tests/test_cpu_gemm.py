"""The float32 CPU GEMM of the exact searches: oneDNN where available, float32-accurate, the same bits at any
thread count and for any grouping of rows (what 2 ranks == 1 process rests on), torch.mm when asked."""
import pytest
import torch

from dist_cluster import cpu_gemm
from dist_cluster.clustering import kmeans
from dist_cluster.neighbors.knn import knn
from tests.dist_utils import run_world

SHAPES = [(4096, 1040, 768), (8192, 100, 33), (520, 10, 785), (256, 1000, 128)]
needs_onednn = pytest.mark.skipif(cpu_gemm._onednn_op() is None, reason="this torch build has no oneDNN")


def _operands(m, n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)


def test_default_backend_is_onednn_where_torch_has_it(monkeypatch):
    monkeypatch.delenv("DIST_CLUSTER_CPU_GEMM", raising=False)
    assert cpu_gemm.backend() == ("onednn" if cpu_gemm._onednn_op() is not None else "blas")
    monkeypatch.setenv("DIST_CLUSTER_CPU_GEMM", "blas")
    assert cpu_gemm.backend() == "blas"
    x, w, b = _operands(64, 10, 7)
    assert torch.equal(cpu_gemm.linear(x, w, b), torch.addmm(b, x, w.T))
    assert not cpu_gemm.takes_onednn(x, w)
    monkeypatch.setenv("DIST_CLUSTER_CPU_GEMM", "mkl")
    with pytest.raises(ValueError, match="DIST_CLUSTER_CPU_GEMM must be one of"):
        cpu_gemm.backend()


def test_float64_never_takes_onednn():
    x, w, _ = _operands(64, 10, 7)
    assert not cpu_gemm.takes_onednn(x.double(), w.double())
    assert torch.equal(cpu_gemm.linear(x.double(), w.double()), x.double() @ w.double().T)


@needs_onednn
@pytest.mark.parametrize("shape", SHAPES)
def test_onednn_is_float32_accurate(shape):
    """Within float32 accumulation's bound of the float64 product (a bfloat16 or TF32 GEMM would not be)."""
    x, w, b = _operands(*shape)
    got = cpu_gemm.linear(x, w, b).double()
    ref = torch.addmm(b.double(), x.double(), w.double().T)
    bound = (shape[2] + 2) * 2.0 ** -24 * (x.double().abs() @ w.double().abs().T + b.double().abs())
    assert ((got - ref).abs() <= bound).all()
    assert float(((got - ref).abs() / bound).max()) < 0.2      # far inside it, as float32 accumulation is


@needs_onednn
@pytest.mark.parametrize("shape", SHAPES)
def test_same_bits_at_any_thread_count_and_row_grouping(shape):
    x, w, b = _operands(*shape)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu_gemm.linear(x, w, b)
        torch.set_num_threads(2)
        two = cpu_gemm.linear(x, w, b)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert torch.equal(cpu_gemm.linear(x[64:192], w, b), one[64:192])


def _blobs(n=1200, d=24, k=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 8
    return centres[torch.arange(n) % k] + torch.randn(n, d, generator=g)


def test_both_backends_give_the_same_float32_kmeans_and_knn(monkeypatch):
    """Only the order of additions differs, so well-separated data get the same labels and lists."""
    x = _blobs()
    got = {}
    for name in ("onednn", "blas"):
        monkeypatch.setenv("DIST_CLUSTER_CPU_GEMM", name)
        got[name] = (kmeans(x, 6, seed=0), knn(x, 8, metric="l2", chunk=256, gemm_dtype=None),
                     knn(x, 8, metric="cosine", chunk=256, gemm_dtype=None))
    (ka, la, ca), (kb, lb, cb) = got["onednn"], got["blas"]
    assert torch.equal(ka.labels, kb.labels) and ka.inertia == pytest.approx(kb.inertia, rel=1e-5)
    assert torch.equal(la.index, lb.index) and torch.allclose(la.dist, lb.dist, atol=1e-4)
    assert torch.equal(ca.index, cb.index) and torch.allclose(ca.dist, cb.dist, atol=1e-5)


def _float32_kmeans_on_rank(rank, world, x):
    cut = 500
    r = kmeans(x[:cut] if rank == 0 else x[cut:], 6, seed=2, n_init=2)
    return r.labels, r.inertia, r.centroids


def test_float32_kmeans_two_ranks_equal_one_process():
    x = _blobs(seed=1) + torch.randn(1200, 24, generator=torch.Generator().manual_seed(3)) * 3   # overlapping
    per_rank = run_world(_float32_kmeans_on_rank, 2, x)
    one = kmeans(x, 6, seed=2, n_init=2)
    assert torch.equal(torch.cat([per_rank[0][0], per_rank[1][0]]), one.labels)
    assert torch.equal(per_rank[0][2], per_rank[1][2]) and torch.allclose(per_rank[0][2], one.centroids, atol=1e-5)
    assert per_rank[0][1] == pytest.approx(one.inertia, rel=1e-6)   # the mean is summed in another order
