"""Relaxed Ncut and its affinities: closed forms (SPEC CgMCR² §7) and 2 gloo ranks == 1 process."""
import pytest
import torch
from dist_utils import run_world

from dist_cluster.distributed import all_gather_with_grad
from dist_cluster.objectives import ncut

torch.set_num_threads(1)


def _rand(n=20, k=4, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    pi = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64), dim=1)
    return z, pi


def naive(pi, a, gamma, form="code", degree="row"):
    """Eq. 6-8 with explicit L = D − A (dense)."""
    deg = a.sum(1) if degree == "row" else a.sum(0)
    d = torch.diag(deg)
    h = pi @ torch.diag((pi.T @ deg + 1e-6) ** -0.5)
    m = h.T @ d @ h - torch.eye(pi.shape[1], dtype=pi.dtype)
    orth = gamma / 2 * (m ** 2).sum() if form == "paper" else gamma * torch.sqrt((m ** 2).sum()) / pi.shape[1]
    return torch.trace(h.T @ (d - a) @ h) + orth


def test_block_diagonal_affinity_and_matching_partition_cost_nothing():
    y = torch.arange(12) % 3
    a = (y[:, None] == y[None]).double() * torch.rand(12, 12, dtype=torch.float64).add(0.5)
    a = 0.5 * (a + a.T)
    pi = torch.nn.functional.one_hot(y, 3).double()
    for form in ("paper", "code"):
        cut, orth = ncut.ncut_terms(pi, a, gamma=50.0, orth_form=form)
        assert abs(cut.item()) < 1e-12
        assert orth.item() < 1e-5           # only the 1e-6 added to the volumes remains
    sparse = ncut.keep_top_s(a, 12)
    assert abs(ncut.ncut_terms(pi, sparse, 50.0)[0].item()) < 1e-12


@pytest.mark.parametrize("form", ["paper", "code"])
def test_scale_invariance(form):
    z, pi = _rand()
    a = ncut.keep_top_s(ncut.cosine_affinity(z), 6)
    base = ncut.ncut_loss(pi, a, 5.0, form).item()
    scaled = ncut.ncut_loss(pi, a._replace(vals=a.vals * 7.3), 5.0, form).item()
    assert scaled == pytest.approx(base, rel=1e-5)


@pytest.mark.parametrize("form,degree,sym", [("paper", "row", False), ("code", "col", False),
                                             ("code", "row", True)])
def test_sparse_equals_dense_naive(form, degree, sym):
    z, pi = _rand()
    sp = ncut.keep_top_s(ncut.cosine_affinity(z), 5)
    sp = ncut.symmetrize(sp) if sym else sp
    dense = sp.to_dense()
    for aff in (sp, dense):
        got = ncut.ncut_loss(pi, aff, 3.0, form, degree)
        assert got.item() == pytest.approx(naive(pi, dense, 3.0, form, degree).item(), rel=1e-12)


def test_top_s_keeps_the_s_largest_with_self_loops():
    z, _ = _rand(n=15)
    a = ncut.cosine_affinity(z)
    sp = ncut.keep_top_s(a, 4)
    dense = sp.to_dense()
    assert ((dense != 0).sum(1) == 4).all()
    assert torch.allclose(dense.diagonal(), torch.ones(15, dtype=torch.float64))   # a_ii = 1 is the max
    kept_min = torch.where(dense != 0, dense, torch.inf).min(1).values
    dropped_max = torch.where(dense == 0, a, -torch.inf).max(1).values
    assert (kept_min > dropped_max).all()


def test_top_s_with_ties_keeps_all_tied_entries():
    a = torch.tensor([[3.0, 2.0, 2.0, 1.0], [1.0, 4.0, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0]])
    kept = ncut.keep_top_s(a, 2, ties=True)   # dense: how many are kept depends on the data
    assert (kept != 0).sum(1).tolist() == [3, 2, 4, 2]
    torch.testing.assert_close(kept[kept != 0], a[kept != 0])
    normed = ncut.row_l2_normalize(kept)
    torch.testing.assert_close(normed.norm(dim=1), torch.ones(4))


def test_gaussian_and_soft_threshold_affinities():
    z, _ = _rand(n=6)
    zn = torch.nn.functional.normalize(z, dim=1)
    g = ncut.gaussian_affinity(z, 0.7)
    torch.testing.assert_close(g, torch.exp(-torch.cdist(zn, zn) ** 2 / (2 * 0.49)))
    c = z @ z.T
    st = ncut.soft_threshold_affinity(z, torch.tensor(0.5, dtype=torch.float64), 10)
    torch.testing.assert_close(st, torch.sign(c) * (c.abs() - 0.5).clamp_min(0) / 10)


def test_sinkhorn_columns_sum_to_n_and_rows_nearly():
    z, _ = _rand(n=10)
    p = ncut.sinkhorn(ncut.cosine_affinity(z))
    torch.testing.assert_close(p.sum(0), torch.full((10,), 10.0, dtype=torch.float64))
    assert (p.sum(1) - 10).abs().max() < 0.5


def _ncut_on_gathered(z, pi, detach):
    zg, pig = all_gather_with_grad(z), all_gather_with_grad(pi)
    a = ncut.keep_top_s(ncut.cosine_affinity(zg.detach() if detach else zg), 5)
    return ncut.ncut_loss(pig, a, 50.0, "code", "col")


def _two_rank_ncut(rank, world, z_all, pi_all):
    n = len(z_all) // world
    out = []
    for detach in (True, False):
        z = z_all[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        pi = pi_all[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        loss = _ncut_on_gathered(z, pi, detach)
        loss.backward()
        out.append((loss.item(), None if z.grad is None else z.grad / world, pi.grad / world))
    return out


def test_two_ranks_equal_one_process():
    z, pi = _rand(n=16, seed=5)
    res = run_world(_two_rank_ncut, 2, z, pi)
    for c, detach in enumerate((True, False)):
        zl, pil = z.clone().requires_grad_(True), pi.clone().requires_grad_(True)
        loss = _ncut_on_gathered(zl, pil, detach)      # one process: the gather is the identity
        loss.backward()
        for rank in range(2):
            v, gz, gpi = res[rank][c]
            rows = slice(rank * 8, (rank + 1) * 8)
            assert v == pytest.approx(loss.item(), rel=1e-12)
            torch.testing.assert_close(gpi, pil.grad[rows], rtol=1e-10, atol=1e-12)
            if detach:
                assert gz is None and zl.grad is None
            else:
                torch.testing.assert_close(gz, zl.grad[rows], rtol=1e-10, atol=1e-12)
