"""Instance / cluster contrastive losses (SPEC P3, P8): closed forms, the paper's equations written out, and
2 ranks == 1 process in value and gradient."""
import math

import pytest
import torch
from dist_utils import BACKENDS, run_world

from dist_cluster.objectives.contrastive import (
    cluster_loss,
    cluster_loss_parts,
    entropy_penalty,
    instance_loss,
    nt_xent,
)

torch.set_num_threads(1)


def _eq5_loop(a, b, tau):
    """Eq. 5/6 (and 8) literally, row by row, with the self term left out (SPEC P7-4)."""
    a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    views, n, total = (a, b), a.shape[0], 0.0
    for k, other in ((0, 1), (1, 0)):
        for i in range(n):
            anchor = views[k][i]
            denom = sum(torch.exp(anchor @ views[kk][j] / tau) for kk in (0, 1) for j in range(n)
                        if not (kk == k and j == i))
            total = total - torch.log(torch.exp(anchor @ views[other][i] / tau) / denom)
    return total / (2 * n)


def test_nt_xent_closed_form_orthonormal_views():
    z = torch.eye(4, dtype=torch.float64)
    want = math.log(1 + 6 * math.exp(-1 / 0.5))          # log(1 + (2N−2) e^{−1/τ}), N = 4, τ = 0.5
    assert want == pytest.approx(0.5945, abs=1e-4)
    assert instance_loss(z, z.clone(), 0.5).item() == pytest.approx(want, abs=1e-12)


def test_instance_and_cluster_contrast_equal_the_written_out_equations():
    g = torch.Generator().manual_seed(0)
    za, zb = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    assert instance_loss(za, zb, 0.5).item() == pytest.approx(_eq5_loop(za, zb, 0.5).item(), abs=1e-12)
    ca, cb = (torch.softmax(torch.randn(9, 4, generator=g, dtype=torch.float64), 1) for _ in range(2))
    parts = cluster_loss_parts(ca, cb, tau=1.0)
    assert parts["contrast"].item() == pytest.approx(_eq5_loop(ca.T, cb.T, 1.0).item(), abs=1e-12)
    assert cluster_loss(ca, cb).item() == pytest.approx((parts["contrast"] + parts["entropy"]).item(), abs=1e-12)


def test_entropy_penalty_zero_at_uniform_and_two_log_m_at_one_hot():
    m = 10
    uniform = torch.eye(m, dtype=torch.float64).repeat(3, 1)          # each cluster holds 3 of 30 samples
    assert entropy_penalty(uniform).item() == pytest.approx(0.0, abs=1e-12)
    near_one_hot = torch.full((30, m), 1e-12, dtype=torch.float64)
    near_one_hot[:, 0] = 1.0
    both = entropy_penalty(near_one_hot) + entropy_penalty(near_one_hot)
    assert torch.isfinite(both) and both.item() == pytest.approx(2 * math.log(m), abs=1e-6)
    exact_one_hot = torch.zeros(30, m, dtype=torch.float64)
    exact_one_hot[:, 0] = 1.0                                           # 0·log 0 must not give NaN
    assert entropy_penalty(exact_one_hot).item() == pytest.approx(math.log(m), abs=1e-9)
    # the paper's −H(C) differs from the CC form by the constant log M per view (same gradient)
    c = torch.softmax(torch.randn(8, m, dtype=torch.float64), 1)
    assert (entropy_penalty(c, "cc") - entropy_penalty(c, "paper")).item() == pytest.approx(math.log(m))
    with pytest.raises(ValueError):
        entropy_penalty(c, "other")


def test_nt_xent_prefers_aligned_views():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(8, 16, generator=g, dtype=torch.float64)
    assert nt_xent(a, a + 0.01 * torch.randn_like(a), 0.5) < nt_xent(a, torch.randn_like(a), 0.5)


def _losses_on_rank(rank, world, za, zb, ca_logits, cb_logits):
    b = za.shape[0] // world
    rows = slice(rank * b, (rank + 1) * b)
    leaves = [x[rows].clone().requires_grad_(True) for x in (za, zb, ca_logits, cb_logits)]
    l_ins = instance_loss(leaves[0], leaves[1], 0.5)
    l_clu = cluster_loss(torch.softmax(leaves[2], 1), torch.softmax(leaves[3], 1), 1.0)
    (l_ins + l_clu).backward()
    return l_ins.item(), l_clu.item(), [x.grad for x in leaves]


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_ranks_equal_one_process_in_value_and_gradient(backend):
    g = torch.Generator().manual_seed(2)
    za, zb = (torch.randn(10, 6, generator=g, dtype=torch.float64) for _ in range(2))
    ca, cb = (2 * torch.randn(10, 4, generator=g, dtype=torch.float64) for _ in range(2))
    ref = [x.clone().requires_grad_(True) for x in (za, zb, ca, cb)]
    r_ins = instance_loss(ref[0], ref[1], 0.5)
    r_clu = cluster_loss(torch.softmax(ref[2], 1), torch.softmax(ref[3], 1), 1.0)
    (r_ins + r_clu).backward()
    results = run_world(_losses_on_rank, 2, za, zb, ca, cb, backend=backend)
    for rank, (v_ins, v_clu, grads) in enumerate(results):
        assert v_ins == pytest.approx(r_ins.item(), abs=1e-12)
        assert v_clu == pytest.approx(r_clu.item(), abs=1e-12)
        for leaf, grad in zip(ref, grads):
            want = leaf.grad[rank * 5:(rank + 1) * 5]
            assert torch.allclose(grad / 2, want, atol=1e-12, rtol=0), (rank, (grad / 2 - want).abs().max())
