"""Distributed k-means: parity with scikit-learn from the same init, empty clusters, 2 ranks == 1 process.

Stated tolerance: from the same initial centres on float64 data, inertia agrees with scikit-learn's to 1e-9
relative and labels agree exactly (same algorithm, same order of operations up to rounding).
"""
import numpy as np
import pytest
import torch
from dist_utils import run_world
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits, make_blobs

from dist_cluster.clustering import kmeans, kmeans_plusplus, kmeans_predict, match_labels, relabel

torch.set_num_threads(1)
RTOL = 1e-9


def digits():
    return torch.from_numpy(load_digits().data).double()


def blobs(n=600, k=6, seed=0):
    x, y = make_blobs(n_samples=n, centers=k, n_features=5, cluster_std=0.6, random_state=seed)
    return torch.from_numpy(x), y


def sk(x, k, init, **kw):
    return KMeans(n_clusters=k, init=init, n_init=1, **kw).fit(x.numpy())


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_same_init_as_sklearn_gives_same_result(seed):
    x = digits()
    c0 = kmeans_plusplus(x, 10, torch.Generator().manual_seed(seed))
    ours, ref = kmeans(x, 10, init=c0), sk(x, 10, c0.numpy())
    assert ours.inertia == pytest.approx(ref.inertia_, rel=RTOL)
    assert np.array_equal(ours.labels.numpy(), ref.labels_)
    assert np.allclose(ours.centroids.numpy(), ref.cluster_centers_, atol=1e-10)


def test_kmeans_plusplus_restarts_reach_sklearn_quality():
    x, y = blobs()
    ours = kmeans(x, 6, n_init=5, seed=1)
    ref = KMeans(6, n_init=5, random_state=1).fit(x.numpy())
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-9)         # both find the blobs
    assert (match_labels(ours.labels.numpy(), y) == y).all()
    d = digits()                                                         # harder: local optima differ
    assert kmeans(d, 10, n_init=10, seed=0).inertia <= 1.01 * KMeans(10, n_init=10, random_state=0).fit(
        d.numpy()).inertia_


def test_best_of_n_init_is_kept():
    x = digits()
    runs = [kmeans(x, 10, n_init=1, init="random", seed=s).inertia for s in range(3)]
    assert kmeans(x, 10, n_init=4, init="random", seed=0).inertia <= runs[0]


def test_empty_cluster_is_reseeded_from_the_farthest_point_like_sklearn():
    x, _ = blobs(300, 3, seed=2)
    c0 = torch.cat([x[:3], torch.full((1, 5), 1e3, dtype=torch.float64)])   # centre 3 attracts nobody
    ours, ref = kmeans(x, 4, init=c0), sk(x, 4, c0.numpy())
    assert torch.bincount(ours.labels, minlength=4).min() > 0
    assert ours.inertia == pytest.approx(ref.inertia_, rel=RTOL)
    assert np.array_equal(ours.labels.numpy(), ref.labels_)


def test_predict_is_nearest_centroid_at_any_chunk():
    x = digits()
    c = kmeans(x, 10, seed=0).centroids
    brute = torch.cdist(x, c).argmin(1)
    for chunk in (7, 100, 10_000):
        assert torch.equal(kmeans_predict(x, c, chunk=chunk), brute)


def test_relabel_and_matching_recover_a_permutation():
    p = np.random.default_rng(0).integers(0, 6, 200)
    perm = np.random.default_rng(1).permutation(6)
    q = perm[p]
    assert (match_labels(p, q) == q).all()
    assert torch.equal(match_labels(torch.from_numpy(p), torch.from_numpy(q)), torch.from_numpy(q))
    assert torch.equal(relabel(torch.tensor([0, 2, 1]), torch.tensor([5, 6, 7])), torch.tensor([5, 7, 6]))


def test_bad_arguments():
    for init in ("k-means++", "random"):
        with pytest.raises(ValueError, match="k must be"):
            kmeans(digits()[:5], 6, init=init)
    with pytest.raises(ValueError):
        kmeans(digits(), 3, init="kmeans")


def _kmeans_cases(rank, world, x, far):
    cut = 250                                              # unequal contiguous shards, in rank order
    rows = slice(0, cut) if rank == 0 else slice(cut, len(x))
    xs = x[rows]
    out = {"pp": kmeans_plusplus(xs, 8, torch.Generator().manual_seed(4)),
           "rank 0 empty": kmeans(x[:0] if rank == 0 else x, 8, seed=3).labels}
    for name, kw in {"kpp": dict(n_init=3, seed=2), "random": dict(init="random", seed=1),
                     "empty": dict(init=far), "sklearn": dict(backend="sklearn", n_init=2, seed=0)}.items():
        k = len(far) if name == "empty" else 8
        r = kmeans(xs, k, **kw)
        out[name] = (r.centroids, r.labels, r.inertia, r.n_iter)
    return out


def test_two_ranks_equal_one_process():
    x = digits()[:700]
    far = torch.cat([x[:7], torch.full((1, 64), 500.0, dtype=torch.float64)])
    per_rank = run_world(_kmeans_cases, 2, x, far)
    assert torch.allclose(per_rank[0]["pp"], kmeans_plusplus(x, 8, torch.Generator().manual_seed(4)), atol=1e-12)
    assert len(per_rank[0]["rank 0 empty"]) == 0
    assert torch.equal(per_rank[1]["rank 0 empty"], kmeans(x, 8, seed=3).labels)
    for name, kw in {"kpp": dict(n_init=3, seed=2), "random": dict(init="random", seed=1),
                     "empty": dict(init=far), "sklearn": dict(backend="sklearn", n_init=2, seed=0)}.items():
        one = kmeans(x, len(far) if name == "empty" else 8, **kw)
        c0, l0, i0, n0 = per_rank[0][name]
        c1, l1, i1, n1 = per_rank[1][name]
        assert torch.equal(c0, c1), name                                     # identical on every rank
        assert torch.allclose(c0, one.centroids, atol=1e-9), name
        assert torch.equal(torch.cat([l0, l1]), one.labels), name
        assert i0 == i1 and i0 == pytest.approx(one.inertia, rel=1e-12), name
        assert n0 == one.n_iter, name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pass_split_over_worker_threads_equals_one_worker(dtype):
    """The chunks of one pass go to several Python threads: labels and counts are the same, the float64 sums
    differ only by the order in which the workers' accumulators are added."""
    from dist_cluster.clustering.lloyd_pass import LloydPass
    x = torch.from_numpy(make_blobs(5000, centers=20, n_features=7, random_state=0)[0]).to(dtype)
    c = x[:20].clone()
    out = {}
    for workers in (1, 3):
        with LloydPass(x, 20, chunk=256, workers=workers) as fused:
            sums, counts, changed = fused.run(c, True)
            out[workers] = (sums, counts, changed, fused.labels.clone(), fused.sq_dist())
    (s1, n1, ch1, l1, d1), (s3, n3, ch3, l3, d3) = out[1], out[3]
    assert torch.equal(l1, l3) and torch.equal(n1, n3) and torch.equal(ch1, ch3) and torch.equal(d1, d3)
    assert torch.allclose(s1, s3, rtol=1e-12, atol=0)


def test_bf16_rows_cluster_as_their_float32_values():
    # counts and sums never accumulate in bf16 (which stops counting at 256): clusters of thousands of rows
    x, _ = make_blobs(6000, 8, centers=3, random_state=0)
    low = torch.tensor(x).bfloat16()
    a, b = kmeans(low, 3, seed=0), kmeans(low.float(), 3, seed=0)
    assert torch.equal(a.labels, b.labels) and a.inertia == pytest.approx(b.inertia, rel=1e-6)
    assert torch.bincount(a.labels).min() > 1000
