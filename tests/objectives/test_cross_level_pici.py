"""Cross-level interaction (SPEC P3 Eq. 13-15, P8): Hungarian renaming, the loss's closed forms, and
2 ranks == 1 process in value and gradient."""
import math

import pytest
import torch
import torch.nn.functional as F
from dist_utils import BACKENDS, run_world

from dist_cluster.objectives.cross_level import cli_loss, cli_view_loss, match_global_batch, match_pseudo_labels

torch.set_num_threads(1)


def test_hungarian_recovers_a_permutation_and_cli_vanishes_on_its_one_hot():
    g = torch.Generator().manual_seed(0)
    m = 7
    p = torch.randint(0, m, (200,), generator=g)
    perm = torch.randperm(m, generator=g)
    q = perm[p]                                   # head labels = π(k-means labels)
    mapping = match_pseudo_labels(p, q, m)
    assert torch.equal(mapping, perm)
    p_tilde = mapping[p]
    assert torch.equal(F.one_hot(p_tilde, m), F.one_hot(q, m))
    c = F.one_hot(q, m).double()
    assert cli_loss(c, c, p_tilde, p_tilde).item() == 0.0
    # a wrong renaming is penalised at −log(eps)
    assert cli_view_loss(c, (p_tilde + 1) % m).item() == pytest.approx(-math.log(1e-8))


def test_hungarian_maximises_matched_counts_under_noise():
    g = torch.Generator().manual_seed(1)
    m = 5
    p = torch.randint(0, m, (500,), generator=g)
    q = (p + 2) % m
    flip = torch.rand(500, generator=g) < 0.3
    q[flip] = torch.randint(0, m, (int(flip.sum()),), generator=g)
    assert torch.equal(match_pseudo_labels(p, q, m), (torch.arange(m) + 2) % m)


def test_cli_modes_equal_torch_losses():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(12, 4, generator=g, dtype=torch.float64)
    probs, t = logits.softmax(1), torch.randint(0, 4, (12,), generator=g)
    assert cli_view_loss(probs, t).item() == pytest.approx(F.nll_loss(probs.log(), t).item(), abs=1e-12)
    double = cli_view_loss(probs, t, "reference_double_softmax").item()
    assert double == pytest.approx(F.cross_entropy(probs, t).item(), abs=1e-12)
    with pytest.raises(ValueError):
        cli_view_loss(probs, t, "bogus")


def _cli_on_rank(rank, world, la, lb, ta, tb, pseudo):
    b = la.shape[0] // world
    rows = slice(rank * b, (rank + 1) * b)
    xa, xb = la[rows].clone().requires_grad_(True), lb[rows].clone().requires_grad_(True)
    loss = cli_loss(xa.softmax(1), xb.softmax(1), ta[rows], tb[rows])
    loss.backward()
    mapping = match_global_batch(pseudo[rows], la[rows].softmax(1))
    return loss.item(), xa.grad, xb.grad, mapping


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_ranks_equal_one_process_in_value_gradient_and_matching(backend):
    g = torch.Generator().manual_seed(3)
    la, lb = (torch.randn(12, 5, generator=g, dtype=torch.float64) for _ in range(2))
    ta, tb, pseudo = (torch.randint(0, 5, (12,), generator=g) for _ in range(3))
    xa, xb = la.clone().requires_grad_(True), lb.clone().requires_grad_(True)
    ref = cli_loss(xa.softmax(1), xb.softmax(1), ta, tb)
    ref.backward()
    ref_map = match_pseudo_labels(pseudo, la.argmax(1), 5)
    results = run_world(_cli_on_rank, 2, la, lb, ta, tb, pseudo, backend=backend)
    for rank, (value, ga, gb, mapping) in enumerate(results):
        rows = slice(rank * 6, (rank + 1) * 6)
        assert value == pytest.approx(ref.item(), abs=1e-12)
        assert torch.allclose(ga / 2, xa.grad[rows], atol=1e-12, rtol=0)
        assert torch.allclose(gb / 2, xb.grad[rows], atol=1e-12, rtol=0)
        assert torch.equal(mapping, ref_map)
