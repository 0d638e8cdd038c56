import numpy as np
import pytest
import torch
from dist_utils import run_world

from dist_cluster.eval import cluster_metrics, gather_in_index_order, gcd_accuracy, hungarian_match, topk_accuracy


def test_acc_of_permuted_labelling_is_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, size=500)
    perm = rng.permutation(7)
    m = cluster_metrics(y, perm[y])
    assert m["acc"] == 1.0 and m["nmi"] == pytest.approx(1.0) and m["ari"] == pytest.approx(1.0)


def test_hand_checked_small_case():
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [1, 1, 0, 0, 0, 0]
    m = cluster_metrics(y_true, y_pred)
    assert m["acc"] == pytest.approx(5 / 6)
    # H(true)=log2, H(pred)=H(1/3,2/3); I = H(true) - H(true|pred) with H(true|pred) = 2/3 * H(1/4, 3/4)
    def h(*p):
        return -sum(q * np.log(q) for q in p)
    mi = h(.5, .5) - 2 / 3 * h(.25, .75)
    assert m["nmi"] == pytest.approx(mi / ((h(.5, .5) + h(1 / 3, 2 / 3)) / 2))
    # ARI by the pair-counting formula: sum C(n_ij,2)=1+3=4, rows C(3,2)*2=6, cols C(2,2)+C(4,2)=7, C(6,2)=15
    expected = (4 - 6 * 7 / 15) / (0.5 * (6 + 7) - 6 * 7 / 15)
    assert m["ari"] == pytest.approx(expected)
    assert list(hungarian_match(y_pred, y_true)) == [1, 0]


def test_gcd_and_topk():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([2, 2, 0, 0, 1, 0])
    r = gcd_accuracy(y, p, old_classes=[0, 1])
    assert r["old"] == 1.0 and r["new"] == 0.5 and r["all"] == pytest.approx(5 / 6)
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    assert topk_accuracy(logits, torch.tensor([0, 0]), ks=(1, 2)) == {"top1": 0.5, "top2": 1.0}


def _gather(rank, world):
    idx = torch.arange(rank, 7, world)          # unequal shards: 4 and 3 samples
    return gather_in_index_order(idx, idx.float() * 10)


def test_gather_in_index_order_two_ranks():
    for idx, val in run_world(_gather, 2):
        assert idx.tolist() == list(range(7)) and val.tolist() == [i * 10.0 for i in range(7)]
