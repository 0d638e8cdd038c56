"""UNIC mining inside the method (SPEC U3, U8 (a), (b) on digits): statistics, exact negatives, resumable
pair stream, the mining file, and 2 ranks == 1 process."""
import os

import numpy as np
import pytest
import torch
from dist_utils import run_world
from unic_helpers import digits_config, make_method

from dist_cluster import neighbors as nb
from dist_cluster.methods.unic.mining import Mined, mining_path
from dist_cluster.methods.unic.pairs import positives

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("unic_data"))


def test_six_points_unions_cleaning_and_sampled_sets():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0], [30.0]])
    res = nb.mine_neighbors(x, tau1=2, tau2=3, eta=2)
    assert res.positives.tolist() == [[0, 1], [1, 0], [2, 1], [3, 4], [4, 3], [5, 4]]   # tie 1↔{0,2}: smaller id
    assert res.union_size.tolist() == [2, 2, 3, 2, 2, 3]
    mined = Mined(res, np.zeros(6, dtype=np.int64))
    assert mined.clean.tolist() == [True, True, False, True, True, False]
    pos, neg = {i: set() for i in range(6)}, {i: set() for i in range(6)}
    for epoch in range(200):
        for i, p in enumerate(positives(0, epoch, np.arange(6), mined.neighbours, mined.clean)):
            pos[i].add(int(p))
        for i, n in enumerate(mined.negatives(0, epoch, np.arange(6))):
            neg[i].add(int(n))
    assert pos == {0: {0, 1}, 1: {0, 1}, 2: {2}, 3: {3, 4}, 4: {3, 4}, 5: {5}}
    assert neg[0] == {3, 4, 5} and neg[5] == {0, 1, 2} and neg[3] == {0, 1, 5}


def test_digits_mining_statistics_match_the_reference_and_cleaning_raises_purity(root, tmp_path):
    method, ctx = make_method(digits_config(root, str(tmp_path)))
    method.on_stage_start(method.stages()[0], ctx, resumed=False)
    rec = method.mined.log_record()
    # SPEC U8 digits (z-scored pixels, τ1 = 10, τ2 = 400): 94.2% positive accuracy, 3.7% false negatives, |U| 38
    assert 0.93 < rec["positive_accuracy"] < 0.955
    assert rec["false_negative_rate"] < 0.5 * rec["same_class_prior"]
    assert 34 <= rec["union_size_p50"] <= 42 and rec["union_size_p10"] < rec["union_size_p90"]
    assert rec["purity_at_q0.3"] > rec["purity_at_q0.6"] > rec["purity_at_q1.0"] == rec["positive_accuracy"]
    assert rec["kept_fraction"] == 1.0                          # no cleaning asked
    kinds = [k for k, _ in ctx.logger.records]
    assert "mining" in kinds
    curve = method.mined.purity_curve((1, 5, 50, 1000))              # mined up to k = 50 (method.purity_ks)
    assert curve["ks"] == [1, 5, 50] and curve["before"][0] > curve["before"][-1]
    paths = method.write_figures(ctx)
    assert any(p.endswith("neighbour_purity.png") and os.path.getsize(p) > 1000 for p in paths)


def test_sampled_negatives_always_rank_at_or_beyond_tau2_by_brute_force(root, tmp_path):
    method, ctx = make_method(digits_config(root, str(tmp_path)))
    method.on_stage_start(method.stages()[0], ctx, resumed=False)
    v = method.mined.res.features.double()
    anchors = np.arange(0, 1797, 7)
    d = torch.cdist(v[anchors], v)                                   # brute-force Q(x_i)
    ids = torch.arange(len(v)).expand_as(d)
    order = torch.from_numpy(np.lexsort((ids.numpy(), d.numpy()), axis=1))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(len(v)).expand_as(order))
    seen = set()
    for epoch in range(5):
        neg = method.mined.negatives(0, epoch, anchors)
        r = rank[torch.arange(len(anchors)), torch.from_numpy(neg)]
        assert int(r.min()) >= 400
        seen.update(neg.tolist())
    assert len(seen) > 800      # 1,285 draws spread over the data set (≈ 917 distinct expected)


def test_pair_stream_resumes_mid_epoch_exactly(root, tmp_path):
    method, ctx = make_method(digits_config(root, str(tmp_path), batch_size=64))
    method.on_stage_start(method.stages()[0], ctx, resumed=False)
    loader = method.build_loaders(ctx)
    full = list(loader.epoch(3))
    tail = list(loader.epoch(3, start_batch=5))
    assert len(full) == 1797 // 64 and len(tail) == len(full) - 5
    for a, b in zip(full[5:], tail):
        for k in ("index", "feature", "pos_feature", "neg_feature"):
            assert torch.equal(a[k], b[k])
    other = next(iter(loader.epoch(4)))
    assert not torch.equal(other["pos_feature"], full[0]["pos_feature"])


def test_mining_file_is_reloaded_eta_reapplied_and_required_on_resume(root, tmp_path):
    cfg = digits_config(root, str(tmp_path))
    method, ctx = make_method(cfg)
    method.on_stage_start(method.stages()[0], ctx, resumed=False)
    path = mining_path(str(tmp_path), cfg)
    stamp = os.stat(path).st_mtime_ns
    cfg2 = digits_config(root, str(tmp_path), eta_quantile=0.5)       # η is not part of the mining space
    again, ctx2 = make_method(cfg2)
    again.on_stage_start(again.stages()[0], ctx2, resumed=True)
    assert os.stat(path).st_mtime_ns == stamp
    assert np.array_equal(again.mined.neighbours, method.mined.neighbours)
    assert np.array_equal(again.mined.labels, method.mined.labels)
    assert 0.45 < again.mined.clean.mean() < 0.6
    assert mining_path(str(tmp_path), digits_config(root, "", tau1=5)) != path
    assert mining_path(str(tmp_path), digits_config(root, "", feature_norm="none")) != path
    os.remove(path)
    lost, ctx3 = make_method(cfg)
    with pytest.raises(RuntimeError, match="resumes mid-training"):
        lost.on_stage_start(lost.stages()[0], ctx3, resumed=True)


def _mine_and_draw(rank, world, root, run_dir):
    cfg = digits_config(root, run_dir, batch_size=128 // world)
    method, ctx = make_method(cfg, rank, world)
    method.on_stage_start(method.stages()[0], ctx, resumed=False)
    batch = next(iter(method.build_loaders(ctx).epoch(2)))
    metrics = method.evaluate(ctx)                   # seeded head: identical on every rank
    m = method.mined
    return (m.neighbours, m.clean, m.labels, m.res.neg_radius, batch["index"], batch["pos_feature"],
            batch["neg_feature"], metrics)


def test_two_ranks_mine_and_draw_exactly_like_one_process(root, tmp_path):
    one = _mine_and_draw(0, 1, root, str(tmp_path / "one"))
    two = run_world(_mine_and_draw, 2, root, str(tmp_path / "two"))
    for r, res in enumerate(two):
        for a, b in zip(one[:4], res[:4]):
            assert np.array_equal(np.asarray(a), np.asarray(b))
        rows = slice(64 * r, 64 * (r + 1))         # rank r holds its slice of the same global batch
        for a, b in zip(one[4:7], res[4:7]):
            assert torch.equal(a[rows], b)
        assert res[7] == one[7]
