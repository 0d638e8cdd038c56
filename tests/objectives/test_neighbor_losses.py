"""UNIC losses (SPEC U4): closed-form values, agreement with torch's BCE, and 2 ranks == 1 process."""
import math

import pytest
import torch
from dist_utils import GPU_BACKEND, run_world

from dist_cluster.objectives.neighbor_losses import (
    entropy,
    marginal_entropy,
    neg_loss,
    pos_loss,
    unic_losses,
    unic_objective,
)

torch.set_num_threads(1)


def test_pos_zero_for_identical_one_hot_and_neg_zero_for_orthogonal():
    eye = torch.eye(4, dtype=torch.float64)
    assert pos_loss(eye, eye).max() < 1e-6
    assert neg_loss(eye, eye.roll(1, dims=0)).max() < 1e-6
    # and the opposite pairings are maximal (clamped at eps = 1e-7 → −log 1e-7)
    assert torch.allclose(pos_loss(eye, eye.roll(1, dims=0)), torch.full((4,), -math.log(1e-7), dtype=torch.float64))
    assert torch.allclose(neg_loss(eye, eye), torch.full((4,), -math.log(1e-7), dtype=torch.float64), rtol=1e-6)


def test_entropy_of_uniform_is_log_k_and_of_one_hot_is_zero():
    for k in (2, 10, 200):
        assert entropy(torch.full((k,), 1.0 / k, dtype=torch.float64)).item() == pytest.approx(math.log(k))
    assert entropy(torch.eye(5, dtype=torch.float64)[0]).item() < 1e-5
    p = torch.softmax(torch.randn(7, 6, dtype=torch.float64), 1)
    assert marginal_entropy(p).item() == pytest.approx(entropy(p.mean(0)).item())


def test_pos_and_neg_equal_torch_binary_cross_entropy_of_the_dot_product():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.softmax(torch.randn(16, 5, generator=g, dtype=torch.float64), 1) for _ in range(2))
    dot = (a * b).sum(1)
    bce = torch.nn.functional.binary_cross_entropy
    assert torch.allclose(pos_loss(a, b), bce(dot, torch.ones_like(dot), reduction="none"))
    assert torch.allclose(neg_loss(a, b), bce(dot, torch.zeros_like(dot), reduction="none"))


def test_objective_is_weighted_sum_with_entropy_subtracted():
    g = torch.Generator().manual_seed(1)
    a, p, n = (torch.softmax(torch.randn(12, 4, generator=g, dtype=torch.float64), 1) for _ in range(3))
    want = pos_loss(a, p).mean() + 0.5 * neg_loss(a, n).mean() - 3.0 * entropy(a.mean(0))
    got = unic_objective(a, p, n, lambda_pos=1.0, lambda_neg=0.5, lambda_ent=3.0)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    terms = unic_losses(a, p, None)
    assert set(terms) == {"pos", "ent"} and terms["ent"].item() <= 0
    # maximum entropy: a collapsed batch (every anchor in cluster 0) costs more than a balanced one
    collapsed, balanced = torch.eye(4, dtype=torch.float64)[[0] * 4], torch.eye(4, dtype=torch.float64)
    assert unic_objective(collapsed, collapsed, None, lambda_neg=0) > unic_objective(balanced, balanced, None,
                                                                                     lambda_neg=0)


def _objective_on_rank(rank, world, logits_a, logits_p, logits_n, lambdas):
    torch.manual_seed(0)
    b = logits_a.shape[0] // world
    rows = slice(rank * b, (rank + 1) * b)
    leaves = [x[rows].clone().requires_grad_(True) for x in (logits_a, logits_p, logits_n)]
    probs = [torch.softmax(x, 1) for x in leaves]
    loss = unic_objective(*probs, *lambdas)
    loss.backward()
    terms = {k: v.item() for k, v in unic_losses(*[p.detach() for p in probs]).items()}
    return loss.item(), terms, [x.grad for x in leaves], marginal_entropy(probs[0].detach()).item()


@pytest.mark.parametrize("lambdas,backend", [((1.0, 1.0, 3.0), "gloo"), ((1.0, 0.0, 5.0), "gloo"),
                                            ((1.0, 1.0, 3.0), GPU_BACKEND)])
def test_two_ranks_equal_one_process_in_value_and_gradient(lambdas, backend):
    g = torch.Generator().manual_seed(2)
    logits = [torch.randn(10, 7, generator=g, dtype=torch.float64) * 2 for _ in range(3)]
    ref_leaves = [x.clone().requires_grad_(True) for x in logits]
    ref = unic_objective(*[torch.softmax(x, 1) for x in ref_leaves], *lambdas)
    ref.backward()
    ref_terms = {k: v.item() for k, v in unic_losses(*[torch.softmax(x, 1) for x in logits]).items()}
    ref_ent = marginal_entropy(torch.softmax(logits[0], 1)).item()

    results = run_world(_objective_on_rank, 2, *logits, lambdas, backend=backend)
    for rank, (value, terms, grads, ent) in enumerate(results):
        assert value == pytest.approx(ref.item(), abs=1e-12)       # same global value on every rank
        assert ent == pytest.approx(ref_ent, abs=1e-12)             # SPEC U8 (f): global-batch entropy
        for k in ref_terms:
            assert terms[k] == pytest.approx(ref_terms[k], abs=1e-12)
        for leaf, grad in zip(ref_leaves, grads):
            if leaf.grad is None:      # λ_neg = 0: the negative never enters the graph, on either side
                assert grad is None
                continue
            # engine's data-parallel mean divides by W; then rank r's rows equal the 1-process gradient
            torch.testing.assert_close(grad / 2, leaf.grad[rank * 5:(rank + 1) * 5], rtol=1e-10, atol=1e-13)
