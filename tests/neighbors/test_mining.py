"""UNIC mining (SPEC U3, U8 a): unions, cleaning, negative radius and sampler, statistics, file, 2 ranks."""
import math

import pytest
import torch
from dist_utils import run_world

from dist_cluster.neighbors import (
    NegativeSampler,
    clean_mask,
    load_mining,
    mine_neighbors,
    mine_or_load,
    sample_positives,
    save_mining,
    union_sizes,
)

torch.set_num_threads(1)


def ranks_brute_force(x):
    """rank[i, j] = position of j in Q(x_i): by (distance, id), self first (pairwise, no matrix product)."""
    d = ((x[:, None] - x[None]) ** 2).sum(-1).sqrt()
    d.fill_diagonal_(-1.0)
    order = torch.argsort(d, dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(len(x)).expand_as(order))
    return order, rank


def six_points():
    # 0,1 are a tight pair; 2→3→4→5 is a chain, so the unions of 2 and 3 reach three points
    return torch.tensor([[0.0], [0.1], [5.0], [5.7], [6.2], [6.4]], dtype=torch.float64)


def test_hand_built_six_point_unions():
    p = torch.tensor([[0, 1], [1, 0], [2, 3], [3, 4], [4, 5], [5, 4]])
    assert union_sizes(p).tolist() == [2, 2, 3, 3, 2, 2]     # e.g. U(3) = N(3) ∪ N(4) = {3,4} ∪ {4,5}
    res = mine_neighbors(six_points(), tau1=2, tau2=4, eta=2)
    assert torch.equal(res.positives, p)
    assert res.union_size.tolist() == [2, 2, 3, 3, 2, 2]
    assert res.clean.tolist() == [True, True, False, False, True, True]
    assert res.neg_first.tolist() == [4, 4, 1, 1, 1, 1]        # Q(0) = 0,1,2,3,4,5 → rank 4 is point 4
    assert res.neg_radius[0].item() == pytest.approx(6.2)


def test_union_sizes_equal_python_sets():
    g = torch.Generator().manual_seed(0)
    p = torch.randint(0, 40, (40, 4), generator=g)
    p[:, 0] = torch.arange(40)
    want = [len({int(b) for a in p[i] for b in p[a]}) for i in range(40)]
    assert union_sizes(p, chunk=7).tolist() == want


def test_clean_mask_eta_and_quantile():
    u = torch.tensor([5, 9, 7, 12, 3, 9, 20, 4, 8, 10])
    mask, eta = clean_mask(u, eta=8)
    assert eta == 8 and mask.tolist() == (u <= 8).tolist()
    mask, eta = clean_mask(u, eta_quantile=0.3)        # 3rd smallest of 10 = 5
    assert eta == 5 and mask.sum() == 3
    mask, eta = clean_mask(u)
    assert math.isinf(eta) and mask.all()


def grid(n=90):
    """Small-integer points: many exactly equal distances, so ties at the radius happen."""
    return torch.randint(0, 4, (n, 2), generator=torch.Generator().manual_seed(3)).double()


@pytest.mark.parametrize("make", [lambda: torch.randn(80, 5, generator=torch.Generator().manual_seed(2),
                                                      dtype=torch.float64), grid])
def test_radius_and_sampler_agree_with_brute_force_ranks(make):
    x, tau2 = make(), 30
    res = mine_neighbors(x, tau1=5, tau2=tau2, chunk=64)
    order, rank = ranks_brute_force(x)
    assert torch.equal(res.positives, order[:, :5])
    assert torch.equal(res.neg_first, order[:, tau2])
    sampler = NegativeSampler.from_mining(res)
    n = len(x)
    every = torch.arange(n).repeat_interleave(n)
    cand = torch.arange(n).repeat(n)
    assert torch.equal(sampler.admissible(every, cand), rank[every, cand] >= tau2)   # all N² pairs
    g = torch.Generator().manual_seed(0)
    anchors = torch.arange(n).repeat(50)
    neg = sampler.sample(anchors, g)
    assert (rank[anchors, neg] >= tau2).all()
    # uniform over the admissible set: each of anchor 0's 50 negatives drawn about 4000/50 times
    counts = torch.bincount(sampler.sample(torch.zeros(4000, dtype=torch.long), g), minlength=n)
    allowed = rank[0] >= tau2
    assert (counts[~allowed] == 0).all() and counts[allowed].min() > 40


def test_positive_sampler_respects_cleaning():
    x = torch.randn(60, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    res = mine_neighbors(x, tau1=6, tau2=20, eta_quantile=0.5)
    g = torch.Generator().manual_seed(1)
    anchors = torch.arange(60).repeat(30)
    pos = sample_positives(res, anchors, g)
    member = (res.positives[anchors] == pos[:, None]).any(1)
    assert member.all()
    assert torch.equal(pos[~res.clean[anchors]], anchors[~res.clean[anchors]])
    others = sample_positives(res, anchors, g, exclude_self=True)
    clean = res.clean[anchors]
    assert (others[clean] != anchors[clean]).all() and (res.positives[anchors] == others[:, None]).any(1).all()
    assert len(set(pos[anchors == 0].tolist())) > 1 or not res.clean[0]


def test_statistics_equal_brute_force():
    g = torch.Generator().manual_seed(5)
    y = torch.randint(0, 3, (120,), generator=g)
    x = torch.randn(120, 6, generator=g, dtype=torch.float64) + 2.0 * y[:, None]
    res = mine_neighbors(x, tau1=8, tau2=50, eta_quantile=0.4, labels=y)
    order, _ = ranks_brute_force(x)
    same = (y[order] == y[:, None]).double()
    assert res.stats["positive_accuracy"] == pytest.approx(same[:, 1:8].mean().item())
    assert res.stats["clean_positive_accuracy"] == pytest.approx(same[res.clean, 1:8].mean().item())
    assert res.stats["false_negative_rate"] == pytest.approx(same[:, 50:].mean().item())
    prior = sum((float((y == c).sum()) / 120) ** 2 for c in range(3))
    assert res.stats["same_class_prior"] == pytest.approx(prior)
    assert res.stats["false_negative_rate"] < prior                     # separated classes: few false negatives
    curve = res.stats["purity_vs_kept"]
    assert curve[-1]["kept"] == 1.0 and curve[-1]["purity"] == pytest.approx(res.stats["positive_accuracy"])


def test_file_roundtrip_and_resume_without_remining(tmp_path):
    x = torch.randn(70, 5, generator=torch.Generator().manual_seed(6))
    y = torch.arange(70) % 4
    path = str(tmp_path / "mining.pt")
    calls = []

    def features():
        calls.append(1)
        return x, None, y

    res = mine_or_load(path, features, tau1=4, tau2=20, eta_quantile=0.5)
    again = mine_or_load(path, features, tau1=4, tau2=20, eta_quantile=0.5)
    assert len(calls) == 1
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"neighbors", "neg_radius", "neg_first", "union_size", "clean", "features", "stats"}
    for name in ("neighbors", "neg_radius", "neg_first", "union_size", "clean", "features"):
        assert torch.equal(getattr(again, name), getattr(res, name))
    assert again.stats == res.stats and again.eta == res.eta
    stricter = mine_or_load(path, features, tau1=4, tau2=20, eta_quantile=0.2)
    assert len(calls) == 1 and stricter.clean.sum() < res.clean.sum()
    with pytest.raises(ValueError, match="tau2"):
        mine_or_load(path, features, tau1=4, tau2=25)
    save_mining(res, str(tmp_path / "copy.pt"))
    assert torch.equal(load_mining(str(tmp_path / "copy.pt")).neighbors, res.neighbors)


def _mine_shards(rank, world, x, y):
    out = []
    for strided in (False, True):
        rows = torch.arange(rank, len(x), world) if strided else (torch.arange(0, 37) if rank == 0
                                                                   else torch.arange(37, len(x)))
        res = mine_neighbors(x[rows], tau1=5, tau2=40, metric="cosine" if strided else "l2",
                             index=rows if strided else None, labels=y[rows], eta_quantile=0.5, chunk=64,
                             max_state_bytes=5000)
        out.append({k: getattr(res, k) for k in ("neighbors", "neg_radius", "neg_first", "union_size", "clean",
                                                 "features", "eta", "stats")})
    return out


def test_two_ranks_mine_the_same_as_one_process():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(101, 6, generator=g), torch.randint(0, 4, (101,), generator=g)
    per_rank = run_world(_mine_shards, 2, x, y)
    for case, strided in enumerate((False, True)):
        one = mine_neighbors(x, tau1=5, tau2=40, metric="cosine" if strided else "l2", labels=y,
                             eta_quantile=0.5, chunk=64)
        for out in per_rank:
            for k, v in out[case].items():
                want = getattr(one, k)
                assert (torch.equal(v, want) if isinstance(v, torch.Tensor) else v == want), (strided, k)
