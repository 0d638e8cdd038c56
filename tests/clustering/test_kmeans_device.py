"""The device design of the Lloyd pass (the default on CUDA), forced on CPU tensors: the same labels and
inertia as the CPU pass (1e-9 relative on float64), scikit-learn's inertia, and no host read-back in a pass."""
import pytest
import torch
from dist_utils import BACKENDS, run_world
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, make_blobs

from dist_cluster.clustering import kmeans, kmeans_plusplus
from dist_cluster.clustering.lloyd_pass import LloydPass

torch.set_num_threads(1)


def blobs(n=3000, k=8, d=16, dtype=torch.float64):
    x, _ = make_blobs(n, centers=k, n_features=d, cluster_std=2.0, random_state=0)
    return torch.from_numpy(x).to(dtype)


@pytest.mark.parametrize("chunk", [None, 5, 700])          # 5 < k: float64 rows added directly
def test_device_path_equals_the_cpu_path_on_float64(chunk):
    x = torch.from_numpy(load_digits().data).double()
    c0 = kmeans_plusplus(x, 10, torch.Generator().manual_seed(0))
    dev = kmeans(x, 10, init=c0, chunk=chunk, path="device")
    cpu = kmeans(x, 10, init=c0, chunk=chunk, path="cpu")
    assert torch.equal(dev.labels, cpu.labels) and dev.n_iter == cpu.n_iter
    assert dev.inertia == pytest.approx(cpu.inertia, rel=1e-9)
    assert torch.allclose(dev.centroids, cpu.centroids, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_device_path_gives_sklearns_inertia_on_blobs(dtype):
    x = blobs(dtype=dtype)
    c0 = kmeans_plusplus(x.double(), 8, torch.Generator().manual_seed(1))
    ours = kmeans(x, 8, init=c0.to(dtype), path="device")
    ref = KMeans(8, init=c0.numpy(), n_init=1).fit(x.double().numpy())
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-9 if dtype == torch.float64 else 1e-5)
    assert (ours.labels.numpy() == ref.labels_).all()


def test_device_path_relocates_empty_clusters_like_sklearn():
    x = blobs(600, 3, 5)
    c0 = torch.cat([x[:3], torch.full((1, 5), 1e3, dtype=torch.float64)])    # centre 3 attracts nobody
    ours, ref = kmeans(x, 4, init=c0, path="device"), KMeans(4, init=c0.numpy(), n_init=1).fit(x.numpy())
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-9) and (ours.labels.numpy() == ref.labels_).all()


def test_a_device_pass_reads_nothing_back(monkeypatch):
    x = blobs(5000, 20, 7, torch.float32)
    with LloydPass(x, 20, chunk=256, path="device") as fused:
        reads = []
        for name in ("__bool__", "__int__", "__float__", "__index__", "item", "tolist", "numpy"):
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, lambda *a, _r=real, _n=name, **k: reads.append(_n) or _r(*a, **k))
        monkeypatch.setattr(torch, "bincount", None)           # reads its maximum back on CUDA
        sums, counts, changed = fused.run(x[:20], True)
        fused.run(x[:20], False)
        monkeypatch.undo()
    assert reads == [] and int(changed) == 5000 and int(counts.sum()) == 5000
    with LloydPass(x, 20, chunk=256, path="cpu") as cpu:
        ref = cpu.run(x[:20], True)
        assert torch.equal(cpu.labels, fused.labels) and torch.equal(ref[1], counts)
    assert torch.allclose(ref[0], sums, rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="path"):
        LloydPass(x, 20, path="gpu")


def _ranks(rank, world, x, c0):
    cut = 2 * len(x) // 5
    r = kmeans(x[:cut] if rank == 0 else x[cut:], len(c0), init=c0, path="device")
    return r.labels, r.inertia


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_ranks_equal_one_process(backend):
    x = blobs(900, 6, 8)
    c0 = kmeans_plusplus(x, 6, torch.Generator().manual_seed(2))
    (l0, i0), (l1, i1) = run_world(_ranks, 2, x, c0, backend=backend)
    one = kmeans(x, 6, init=c0, path="device")
    assert torch.equal(torch.cat([l0, l1]), one.labels) and i0 == pytest.approx(one.inertia, rel=1e-12)
