"""The device path of the exact kNN search (int64 keys, selection without host syncs), run on CPU tensors:
the same lists as a float64/float32 brute force with ties by id, and as the CPU path from the same scores."""
import pytest
import torch
from dist_utils import BACKENDS, run_world
from test_knn import brute_force, data, duplicates

from dist_cluster.neighbors import keys, knn
from dist_cluster.neighbors.device_search import _Running, cuda_tiles, group_width
from dist_cluster.neighbors.topk import lexsort_rows

torch.set_num_threads(1)


def few_values(n=500, d=4, seed=2):
    """float32 small integers: every score is exact in float32 whatever the summation order, and many tie."""
    return torch.randint(-2, 3, (n, d), generator=torch.Generator().manual_seed(seed)).float()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_keys_order_by_score_then_smaller_id(dtype):
    g = torch.Generator().manual_seed(0)
    s = torch.randint(-4, 5, (50, 300), generator=g).to(dtype) * 0.37
    s[:, :8] = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 1e-7, -1e-7, 6e4, -6e4]).to(dtype)
    ids = torch.stack([torch.randperm(300, generator=g) for _ in range(50)])
    order = keys.pack(s, ids, keys.id_bits(dtype)).argsort(1, descending=True)
    ref_s, ref_i = lexsort_rows(s.float(), ids)          # −0 and +0 tie, as floats do
    assert torch.equal(ids.gather(1, order), ref_i)
    k = keys.pack(s, ids, keys.id_bits(dtype))
    assert torch.equal(keys.ids_of(k, keys.id_bits(dtype)), ids) and torch.equal(keys.scores_of(k, keys.id_bits(
        dtype), dtype), s)
    pad = keys.pack(torch.tensor(float("-inf"), dtype=dtype), torch.tensor(keys.max_rows(dtype)), keys.id_bits(dtype))
    assert int(pad) == keys.lowest(dtype) and bool((k >= keys.lowest(dtype)).all())


def test_float64_keys_never_contradict_the_score_order():
    s = torch.sort(torch.randn(10_000, dtype=torch.float64) * 10.0 ** torch.randint(-30, 30, (10_000,))).values
    assert (keys.orderable(s).diff() >= 0).all() and not keys.exact(torch.float64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["random", "ties", "marks"])
def test_group_selection_is_exact_where_certified(dtype, kind):
    g = torch.Generator().manual_seed(3)
    n, w, k = 200, 1280, 10
    s = (torch.randint(0, 6, (n, w), generator=g).float() if kind == "ties"
         else torch.randn(n, w, generator=g)).to(dtype)
    if kind == "marks":          # padding −inf at the end, the query's own column +inf
        s[:, -300:] = float("-inf")
        s[torch.arange(n), torch.arange(n) * 3] = float("inf")
    ids = torch.randperm(w, generator=g)
    run = _Running(n, k, dtype, s.device)
    low = keys.low_bits(ids, keys.id_bits(dtype))
    for part in range(0, w, 640):              # two blocks
        run.add(s[:, part:part + 640].contiguous(), low[part:part + 640], group_width(640, k + 8), k + 8)
    v, i, ok = run.result(k)
    rv, ri = lexsort_rows(s, ids.expand_as(s))
    assert torch.equal(v[ok], rv[ok, :k]) and torch.equal(i[ok], ri[ok, :k])
    if kind != "ties":           # ties: every group reaches the top value, so no cut is certified
        assert ok.float().mean() > 0.9


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("chunk", [64, 256])
@pytest.mark.parametrize("kind", ["random64", "few_values", "duplicates"])
def test_device_path_equals_brute_force_and_the_cpu_path(metric, chunk, kind):
    x = {"random64": lambda: data(600, 12), "few_values": few_values,
         "duplicates": lambda: duplicates(600, metric).float()}[kind]()
    k = 10
    nb = knn(x, k, metric=metric, chunk=chunk, path="device")
    idx, dd = brute_force(x.double(), k, metric)
    if kind != "few_values" or metric == "l2":     # normalised small integers tie in exact arithmetic only
        assert torch.equal(nb.index, idx)
    assert torch.allclose(nb.dist.double(), dd, atol=1e-5)
    cpu = knn(x, k, metric=metric, chunk=chunk, path="cpu")
    assert torch.equal(nb.index, cpu.index) and torch.equal(nb.dist, cpu.dist)


def test_edge_cases_rounds_ids_and_options():
    x = data(150, 5)
    for k in (1, 100, 150):                                  # k up to the whole data set
        assert torch.equal(knn(x, k, chunk=64, path="device").index, brute_force(x, k, "l2")[0])
    nb = knn(x, 5, chunk=64, n_queries=70, max_state_bytes=2000, path="device")     # several rounds
    assert torch.equal(nb.index, brute_force(x, 5, "l2")[0][:70])
    gid = torch.randperm(150, generator=torch.Generator().manual_seed(1)) * 7 + 3   # explicit ids
    nb = knn(x, 6, index=gid, chunk=64, path="device")
    assert torch.equal(nb.index, knn(x, 6, index=gid, chunk=64, path="cpu").index)
    free = knn(x, 6, chunk=64, self_first=False, path="device")
    assert torch.equal(free.index, knn(x, 6, chunk=64, self_first=False, path="cpu").index)
    with pytest.raises(ValueError, match="path"):
        knn(x, 3, path="gpu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_rows_give_the_cpu_paths_lists(dtype):
    x = torch.nn.functional.normalize(data(700, 32), dim=1).to(dtype)
    for metric in ("cosine", "l2"):
        dev, cpu = (knn(x, 10, metric=metric, chunk=256, path=p) for p in ("device", "cpu"))
        assert torch.equal(dev.index, cpu.index) and torch.equal(dev.dist, cpu.dist)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_low_precision_candidates_on_the_device_path(metric):
    x = data(300, 16)
    nb = knn(x, 6, metric=metric, chunk=64, gemm_dtype=torch.bfloat16, rescore=24, path="device")
    assert torch.equal(nb.index, brute_force(x, 6, metric)[0])


def _device_cases(rank, world, cases):
    out = []
    for x, metric, strided in cases:
        cut = 2 * len(x) // 5
        rows = torch.arange(rank, len(x), world) if strided else torch.arange(0, cut) if rank == 0 \
            else torch.arange(cut, len(x))
        nb = knn(x[rows], 9, metric=metric, index=rows if strided else None, chunk=128,
                 max_state_bytes=3000 if strided else 1 << 29, path="device")
        out.append((rows, nb.index, nb.dist))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_ranks_identical_to_one_process(backend):
    cases = [(x, metric, strided) for metric in ("l2", "cosine")
             for x in (data(401, 24, dtype=torch.float32), few_values(), duplicates(metric=metric))
             for strided in (False, True)]
    results = run_world(_device_cases, 2, cases, backend=backend)
    for c, (x, metric, strided) in enumerate(cases):
        one = knn(x, 9, metric=metric, chunk=128, path="device")
        idx, dist = torch.empty_like(one.index), torch.empty_like(one.dist)
        for per_rank in results:
            rows, i, d = per_rank[c]
            idx[rows], dist[rows] = i, d
        assert torch.equal(idx, one.index) and torch.equal(dist, one.dist), (c, metric, strided)
        if x.dtype == torch.float64 or (metric == "l2" and c % 6 >= 2):     # exact scores: brute force too
            assert torch.equal(idx, brute_force(x.double(), 9, metric)[0]), (c, metric, strided)


def test_cuda_tiles_fit_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100 << 30, 140 << 30))
    x = torch.zeros(1, 1)
    q, tile = cuda_tiles(x, [200_000], 200_000, 2)
    assert (q, tile) == (15424, 50048) and q % 64 == 0          # 13 query tiles × 4 blocks, no short ones
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 30, 140 << 30))
    q, tile = cuda_tiles(x, [600_000, 400_000], 1_000_000, 4)
    assert q * (tile + 16) * 4 <= (1 << 30) // 4 + 64 * 4096 * 4 and tile >= 4096 - 64


def _read_backs(monkeypatch, fn) -> int:
    reads = []
    for name in ("__bool__", "__int__", "__float__", "__index__", "item", "tolist", "numpy"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda *a, _r=real, _n=name, **k: reads.append(_n) or _r(*a, **k))
    try:
        fn()
    finally:
        monkeypatch.undo()
    return len(reads)


def test_host_read_backs_do_not_grow_with_the_tile_pairs(monkeypatch):
    x = data(1200, 8, dtype=torch.float32)
    few = _read_backs(monkeypatch, lambda: knn(x, 5, chunk=640, path="device", gemm_dtype=None))     # 2×2 pairs
    many = _read_backs(monkeypatch, lambda: knn(x, 5, chunk=64, path="device", gemm_dtype=None))     # 19×19
    assert few == many and many <= 8, (few, many)
    assert _read_backs(monkeypatch, lambda: knn(x, 5, chunk=64, path="cpu", gemm_dtype=None)) > many
