"""Exact sharded kNN: equal to brute force, ties broken by the smaller index, 2 ranks == 1 process."""
import pytest
import torch
from dist_utils import run_world

from dist_cluster.neighbors import knn

torch.set_num_threads(1)


def brute_force(x, k, metric):
    """argsort of the full distance matrix by (distance, index) with self first."""
    if metric == "cosine":          # elementwise, so every pair is computed the same way
        x = torch.nn.functional.normalize(x, dim=1)
        d = (1 - (x[:, None] * x[None]).sum(-1)).clamp(0, 2)
    else:
        d = ((x[:, None] - x[None]) ** 2).sum(-1).sqrt()
    key = d.clone()
    key.fill_diagonal_(-1.0)
    idx = torch.argsort(key, dim=1, stable=True)[:, :k]
    dd = d.gather(1, idx)
    dd[:, 0] = 0
    return idx, dd


def data(n=203, d=12, seed=0, dtype=torch.float64):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def duplicates(n=160, metric="l2"):
    """Exact ties. l2: small-integer points (exact distances, many equal); cosine: 12 directions repeated."""
    g = torch.Generator().manual_seed(1)
    if metric == "l2":
        return torch.randint(0, 3, (n, 3), generator=g).double()
    return torch.randn(12, 5, generator=g, dtype=torch.float64)[torch.randint(0, 12, (n,), generator=g)]


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("chunk,state", [(64, 1 << 29), (64, 2000), (4096, 1 << 29)])
def test_equals_brute_force(metric, chunk, state):
    x = data()
    nb = knn(x, 7, metric=metric, chunk=chunk, max_state_bytes=state)
    idx, dd = brute_force(x, 7, metric)
    assert torch.equal(nb.index, idx)
    assert torch.allclose(nb.dist, dd, atol=1e-6)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_ties_go_to_the_smaller_index_and_self_is_first(metric):
    x = duplicates(metric=metric)
    nb = knn(x, 25, metric=metric, chunk=64)
    idx, dd = brute_force(x, 25, metric)
    assert torch.equal(nb.index[:, 0], torch.arange(len(x)))
    assert torch.equal(nb.index, idx)
    assert torch.allclose(nb.dist, dd, atol=1e-6)


def test_k_larger_than_a_chunk_and_whole_data_set():
    x = data(150, 5)
    for k in (100, 150):
        nb = knn(x, k, chunk=64)
        assert torch.equal(nb.index, brute_force(x, k, "l2")[0])
    with pytest.raises(ValueError):
        knn(x, 151)
    with pytest.raises(ValueError, match="NaN"):
        knn(torch.cat([x, torch.full((1, 5), float("nan"), dtype=x.dtype)]), 3)


def test_querying_the_first_rows_only():
    x = data()
    nb = knn(x, 5, chunk=64, n_queries=70, max_state_bytes=2000)
    assert nb.index.shape == (70, 5) and torch.equal(nb.index, brute_force(x, 5, "l2")[0][:70])


def _shard_rows(rank, world, n, mode):
    if mode == "strided":                # rank r holds rows r, r+W, ...: global ids passed explicitly
        return torch.arange(rank, n, world)
    cut = {"cut": 2 * n // 5, "empty": 0}[mode]      # unequal contiguous shards; "empty": rank 0 holds none
    return torch.arange(0, cut) if rank == 0 else torch.arange(cut, n)


def _knn_cases(rank, world, cases):
    out = []
    for x, metric, mode in cases:
        rows = _shard_rows(rank, world, len(x), mode)
        nb = knn(x[rows], 9, metric=metric, index=rows if mode == "strided" else None, chunk=64,
                 max_state_bytes=3000 if mode == "strided" else 1 << 29)
        out.append((rows, nb.index, nb.dist))
    return out


def test_two_ranks_identical_to_one_process():
    """Bit-identical lists and distances, on random data and on data full of exact ties."""
    cases = [(x, metric, mode) for metric in ("l2", "cosine")
             for x in (data(301, 24, dtype=torch.float32), data(250, 8), duplicates(metric=metric))
             for mode in ("cut", "strided")] + [(data(100, 5), "l2", "empty")]
    results = run_world(_knn_cases, 2, cases)
    for c, (x, metric, mode) in enumerate(cases):
        one = knn(x, 9, metric=metric, chunk=64)
        idx, dist = torch.empty_like(one.index), torch.empty_like(one.dist)
        for per_rank in results:
            rows, i, d = per_rank[c]
            idx[rows], dist[rows] = i, d
        assert torch.equal(idx, one.index), (c, metric, mode)
        assert torch.equal(dist, one.dist), (c, metric, mode)


MEMORY_PROBE = """
import resource, torch
torch.set_num_threads(1)
from dist_cluster.neighbors import knn
x = torch.randn(30000, 4, generator=torch.Generator().manual_seed(0))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
nb = knn(x, 5, chunk=1024, max_state_bytes=1 << 20)
assert nb.index.shape == (30000, 5) and (nb.index[:, 0] == torch.arange(30000)).all()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.slow
def test_memory_stays_bounded_by_the_chunk():
    """30,000 points: an N×N float32 matrix would take 3.6 GB; the chunked search stays far below."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, timeout=240,
                         check=True)
    grown_mb = int(out.stdout.split()[-1])
    assert grown_mb < 300, grown_mb


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_low_precision_gemm_with_exact_rescoring(metric):
    """bfloat16 scores pick candidates; the float64 re-scoring gives brute force's lists and distances."""
    x = data(300, 16)
    nb = knn(x, 6, metric=metric, chunk=64, gemm_dtype=torch.bfloat16, rescore=24)
    idx, dd = brute_force(x, 6, metric)
    assert torch.equal(nb.index, idx)
    assert torch.allclose(nb.dist, dd, atol=1e-6)


def test_inplace_normalisation_gives_the_same_lists():
    x = data(150, 8)
    ref = knn(x, 5, metric="cosine", chunk=64)
    y = x.clone()
    nb = knn(y, 5, metric="cosine", chunk=64, inplace=True)
    assert torch.equal(nb.index, ref.index) and torch.equal(nb.dist, ref.dist)
    assert torch.allclose(y.norm(dim=1), torch.ones(len(y), dtype=y.dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_cosine_rows_are_torch_normalize_bit_for_bit(dtype):
    """The normalised copy (written to huge pages when large) and the in-place form round as F.normalize."""
    from dist_cluster.neighbors.knn import prepare
    x = torch.randn(3000, 1500, generator=torch.Generator().manual_seed(0)).to(dtype)      # 18 MB in float32
    x[7] = 0                                                                                # norm clamped
    ref, cols = torch.nn.functional.normalize(x, dim=1), x.T.contiguous().T           # cols: column-major
    assert torch.equal(prepare(x, "cosine"), ref)
    got = prepare(cols, "cosine")
    assert got.is_contiguous() and torch.equal(got, torch.nn.functional.normalize(cols, dim=1))
    assert torch.equal(prepare(x.clone(), "cosine", inplace=True), ref)


def _low_precision_cases(rank, world, cases):
    out = []
    for x, metric in cases:
        rows = torch.arange(rank, len(x), world)
        nb = knn(x[rows], 6, metric=metric, index=rows, chunk=64, max_state_bytes=4000, gemm_dtype=torch.bfloat16,
                 rescore=8)
        out.append((rows, nb.index, nb.searched_again))
    return out


def test_low_precision_candidates_on_two_ranks_give_brute_forces_lists():
    """bfloat16 candidates, exact re-scoring, several rounds, strided ids: brute force's lists. Exact ties with
    the k-th cannot be certified, so those queries are searched again in full precision."""
    cases = [(data(300, 16), m) for m in ("l2", "cosine")] + [(duplicates(metric=m), m) for m in ("l2", "cosine")]
    results = run_world(_low_precision_cases, 2, cases)
    for c, (x, metric) in enumerate(cases):
        idx, again = torch.empty((len(x), 6), dtype=torch.long), 0
        for rows, i, a in (per_rank[c] for per_rank in results):
            idx[rows], again = i, again + a
        assert torch.equal(idx, brute_force(x, 6, metric)[0]), (c, metric)
        if c >= 2:
            assert again > 0, metric


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_error_bound_holds_where_rounding_errors_add_up(metric):
    """Every coordinate just under a rounding midpoint rounds down by almost a unit: the worst case the
    certificate must cover (beside random rows); the bound holds and is nearly reached."""
    from dist_cluster.neighbors.rescore import error_bound
    g = torch.Generator().manual_seed(0)
    worst = (1 + 0.99 * 2.0 ** -8) * 2.0 ** torch.arange(4.0)[:, None].expand(4, 768)
    x = torch.cat([worst, torch.rand(60, 768, generator=g) * 3])
    b = x.to(torch.bfloat16)
    low = b @ b.T
    exact = x.double() @ x.double().T
    if metric == "l2":
        low = torch.addmm(-(b * b).sum(1), b, b.T, alpha=2)
        exact = 2 * exact - (x.double() ** 2).sum(1)
    eps = error_bound(torch.bfloat16, 768, x.norm(dim=1, keepdim=True), float(x.norm(dim=1).max()), low.float(),
                      metric).double()
    err = (low.double() - exact).abs()
    assert (err <= eps).all(), float((err - eps).max())
    assert float((err / eps)[:4, :4].max()) > 0.3         # the bound is nearly reached, not vacuous


def test_large_tiles_with_exact_duplicates_equal_brute_force():
    x = duplicates(1500, "l2")           # one tile of 1500 + guard columns: the grouped selection
    idx, dist = brute_force(x, 10, "l2")
    nb = knn(x, 10, metric="l2")
    assert torch.equal(nb.index, idx) and torch.allclose(nb.dist, dist)


def test_auto_precision_takes_bfloat16_only_for_wide_float32_rows_on_fast_hardware():
    from dist_cluster.neighbors.rescore import AUTO_MIN_DIM, auto_dtype, fast_low_precision
    fast = fast_low_precision(torch.device("cpu"))
    assert auto_dtype(torch.zeros(2, AUTO_MIN_DIM)) == (torch.bfloat16 if fast else None)
    assert auto_dtype(torch.zeros(2, AUTO_MIN_DIM - 1)) is None
    assert auto_dtype(torch.zeros(2, AUTO_MIN_DIM, dtype=torch.float64)) is None
    x = torch.randn(700, AUTO_MIN_DIM, generator=torch.Generator().manual_seed(4))
    for metric in ("cosine", "l2"):
        default, full = knn(x, 8, metric=metric), knn(x, 8, metric=metric, gemm_dtype=None)
        assert torch.equal(default.index, full.index)
        assert torch.allclose(default.dist, full.dist, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="gemm_dtype"):
        knn(x, 8, gemm_dtype=torch.int8)
