"""The pieces under the kNN search: exact top-k selection with ties by id, and how rows are cut into tiles."""
import pytest
import torch

from dist_cluster.neighbors import topk_lex


def test_topk_lex_orders_equal_scores_by_id():
    s = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    ids = torch.tensor([9, 7, 4, 1, 5])
    v, i = topk_lex(s, ids, 2)
    assert i.tolist() == [[4, 5]] and v.tolist() == [[3.0, 3.0]]


def test_candidate_selection_over_column_groups_keeps_the_best_scores():
    from dist_cluster.neighbors.topk import RunningTopK
    g = torch.Generator().manual_seed(0)
    s = torch.randn(300, 4112, generator=g)
    ids = torch.arange(4112) * 3
    run = RunningTopK(42, ties=False)
    run.add(s, ids)
    v, i = run.result()
    ref = s.topk(42, dim=1)
    assert torch.equal(v, ref.values) and torch.equal(i, ids[ref.indices])


@pytest.mark.parametrize("kind", ["random", "ties", "marks"])
def test_exact_selection_over_column_groups_equals_a_full_sort(kind):
    from dist_cluster.neighbors.topk import GROUP, RunningTopK, lexsort_rows
    g = torch.Generator().manual_seed(3)
    m = GROUP * 80
    if kind == "ties":          # few distinct values: groups tie at the cut, and so do columns inside them
        s = torch.randint(0, 6, (200, m), generator=g).float()
    else:
        s = torch.randn(200, m, generator=g)
    if kind == "marks":         # padding scores -inf at the end, a self match +inf
        s[:, -300:] = float("-inf")
        s[torch.arange(200), torch.arange(200) * 3] = float("inf")
    ids = torch.randperm(m, generator=g)
    for k in (1, 10, 20):
        run = RunningTopK(k)
        run.add(s, ids)
        v, i = run.result()
        rv, ri = lexsort_rows(s, ids.expand_as(s))
        assert torch.equal(v, rv[:, :k]) and torch.equal(i, ri[:, :k])


@pytest.mark.parametrize("kind", ["random", "ties", "marks"])
@pytest.mark.parametrize("ties", [True, False])
def test_running_lists_over_many_blocks_equal_a_full_sort(kind, ties):
    """Blocks after the first are read only where a group reaches the rows' k-th score (the floor): the
    lists stay those of one sort of all columns, ties at the cut by id."""
    from dist_cluster.neighbors.topk import GROUP, RunningTopK, lexsort_rows
    g = torch.Generator().manual_seed(5)
    m, blocks = GROUP * 48, 7
    if kind == "ties":
        s = torch.randint(0, 9, (150, m * blocks), generator=g).float()
    else:
        s = torch.randn(150, m * blocks, generator=g)
    if kind == "marks":         # the last block half padding, some rows' own column +inf in block 3
        s[:, -m // 2:] = float("-inf")
        s[torch.arange(0, 150, 2), 3 * m + torch.arange(0, 150, 2)] = float("inf")
    ids = torch.randperm(m * blocks, generator=g)
    for k in (1, 10, 30):
        run = RunningTopK(k, pending=2, ties=ties)
        for b in range(blocks):
            run.add(s[:, b * m:(b + 1) * m], ids[b * m:(b + 1) * m])
        v, i = run.result()
        rv, ri = lexsort_rows(s, ids.expand_as(s))
        assert torch.equal(v, rv[:, :k])
        if ties:
            assert torch.equal(i, ri[:, :k])


def test_even_length_cuts_into_the_fewest_nearly_equal_blocks():
    from dist_cluster.neighbors.tiles import even_length
    for n in [0, 1, 63, 64, 4095, 4096, 4097, 10000, 100000, 123457]:
        for cap in [64, 1000, 4096, 65520]:
            length = even_length(n, cap)
            blocks = -(-max(n, 1) // length)
            assert length % 64 == 0 and blocks <= -(-max(n, 1) // cap), (n, cap)   # no more blocks than the cap needs
            assert length < cap + 64, (n, cap)                                      # at most the cap, rounded up
            assert length - 64 < -(-max(n, 1) // blocks), (n, cap)                  # no longer than needed


def test_the_cpu_search_takes_the_query_tiles_cpu_tiles_gives():
    from dist_cluster.neighbors.knn import CPU_TILE, _search, cpu_tiles
    x = torch.randn(100, 8)
    for n in (100, 100_000):
        search, _ = _search(x, "cpu", [n], torch.arange(n), True, "l2", True, None, 100, 10, x.dtype)
        assert (search.q_rows, search.tile) == cpu_tiles(n)
    assert cpu_tiles(100_000) == (CPU_TILE[0], 4032)
