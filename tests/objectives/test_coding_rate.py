"""Coding rates R and Rc: closed forms (SPEC CgMCR² §7) and 2 gloo ranks == 1 process in value and gradient."""
import numpy as np
import pytest
import torch
from dist_utils import BACKENDS, run_world

from dist_cluster.objectives.coding_rate import cluster_coding_rate, coding_rate, logdet_spd

torch.set_num_threads(1)


def _data(n=24, d=6, k=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)
    pi = torch.softmax(torch.randn(n, k, generator=g, dtype=dtype) * 2, dim=1)
    return z, pi


def naive_r(z, eps, eps_sq=False):
    z = z.numpy()
    n, d = z.shape
    e2 = eps if eps_sq else eps ** 2
    return 0.5 * np.linalg.slogdet(np.eye(d) + d / (n * e2) * z.T @ z)[1]


def naive_rc(z, pi, eps, eps_sq=False):
    z, pi = z.numpy(), pi.numpy()
    n, d = z.shape
    e2 = eps if eps_sq else eps ** 2
    total = 0.0
    for j in range(pi.shape[1]):
        t = pi[:, j].sum() + 1e-8
        total += t / (2 * n) * np.linalg.slogdet(np.eye(d) + d / (t * e2) * z.T @ np.diag(pi[:, j]) @ z)[1]
    return total


@pytest.mark.parametrize("eps_sq", [False, True])
def test_match_naive_numpy(eps_sq):
    z, pi = _data()
    assert coding_rate(z, 0.5, eps_sq).item() == pytest.approx(naive_r(z, 0.5, eps_sq), rel=1e-12)
    assert cluster_coding_rate(z, pi, 0.5, eps_sq).item() == pytest.approx(naive_rc(z, pi, 0.5, eps_sq), rel=1e-12)


def test_sylvester_dd_equals_nn_form():
    z, _ = _data(n=9, d=20)            # n < d: the n×n form is the small one here
    n, d = z.shape
    nn_form = 0.5 * torch.logdet(torch.eye(n, dtype=z.dtype) + d / (n * 0.25) * z @ z.T)
    assert coding_rate(z, 0.5).item() == pytest.approx(nn_form.item(), rel=1e-12)


def test_one_hot_pi_is_supervised_rc():
    z, _ = _data(n=30)
    y = torch.arange(30) % 3
    pi = torch.nn.functional.one_hot(y, 3).double()
    n, d = z.shape
    sup = sum(len(zj) / (2 * n) * torch.logdet(torch.eye(d, dtype=z.dtype) + d / (len(zj) * 0.25) * zj.T @ zj)
              for zj in (z[y == c] for c in range(3)))
    assert cluster_coding_rate(z, pi, 0.5).item() == pytest.approx(sup.item(), rel=1e-7)


def test_chunks_and_gradient_match_torch_logdet():
    z, pi = _data(k=7)
    z.requires_grad_(True)
    pi.requires_grad_(True)
    ours = cluster_coding_rate(z, pi, 0.4, chunk=2) - coding_rate(z, 0.4)
    g_ours = torch.autograd.grad(ours, (z, pi))
    n, d = z.shape
    eye = torch.eye(d, dtype=z.dtype)
    ref = -0.5 * torch.logdet(eye + d / (n * 0.16) * z.T @ z)
    for j in range(7):
        t = pi[:, j].sum() + 1e-8
        ref = ref + t / (2 * n) * torch.logdet(eye + d / (t * 0.16) * (z.T * pi[:, j]) @ z)
    g_ref = torch.autograd.grad(ref, (z, pi))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_low_precision_input_computes_in_float32():
    z, pi = _data(dtype=torch.float32)
    r16 = coding_rate(z.bfloat16(), 0.5)
    rc16 = cluster_coding_rate(z.bfloat16(), pi.bfloat16(), 0.5)
    assert r16.dtype == torch.float32 and rc16.dtype == torch.float32
    assert r16.item() == pytest.approx(coding_rate(z, 0.5).item(), rel=2e-2)
    assert rc16.item() == pytest.approx(cluster_coding_rate(z, pi, 0.5).item(), rel=2e-2)


def test_logdet_spd_batched():
    a = torch.randn(3, 5, 5, dtype=torch.float64)
    m = a @ a.transpose(1, 2) + torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(logdet_spd(m), torch.logdet(m))
    m[1] = -m[1]                                   # not positive definite: NaN there (the guard stops), no raise
    got = logdet_spd(m)
    assert torch.isnan(got[1]) and torch.isfinite(got[[0, 2]]).all()


CASES = [(5, False), (1, False), (4, True)]     # (k, inputs already gathered); k=1 leaves rank 1 no cluster


def _two_rank_rates(rank, world, cases):
    out = []
    for z_all, pi_all, gathered in cases:
        n = len(z_all) // world
        z = z_all[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        pi = pi_all[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        if gathered:
            from dist_cluster.distributed import all_gather_with_grad
            rc = cluster_coding_rate(all_gather_with_grad(z), all_gather_with_grad(pi), 0.5, gathered=True,
                                     chunk=1)
        else:
            rc = cluster_coding_rate(z, pi, 0.5, chunk=1)
        r = coding_rate(z, 0.5)
        (rc - r).backward()
        out.append((r.item(), rc.item(), z.grad / world, pi.grad / world))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_ranks_equal_one_process(backend):
    cases = [(*_data(n=16, d=5, k=k, seed=3), gathered) for k, gathered in CASES]
    res = run_world(_two_rank_rates, 2, cases, backend=backend)
    for c, (z, pi, _) in enumerate(cases):
        zl, pil = z.clone().requires_grad_(True), pi.clone().requires_grad_(True)
        r, rc = coding_rate(zl, 0.5), cluster_coding_rate(zl, pil, 0.5)
        (rc - r).backward()
        for rank in range(2):
            r2, rc2, gz, gpi = res[rank][c]
            assert r2 == pytest.approx(r.item(), rel=1e-12)
            assert rc2 == pytest.approx(rc.item(), rel=1e-12)
            torch.testing.assert_close(gz, zl.grad[rank * 8:(rank + 1) * 8], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(gpi, pil.grad[rank * 8:(rank + 1) * 8], rtol=1e-10, atol=1e-12)


def test_logdet_spd_gradient_is_the_inverse():
    a = torch.randn(4, 6, 6, dtype=torch.float64)
    m = (a @ a.transpose(1, 2) + torch.eye(6, dtype=torch.float64)).requires_grad_(True)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    (g,) = torch.autograd.grad((w * logdet_spd(m)).sum(), m)
    torch.testing.assert_close(g, w[:, None, None] * torch.linalg.inv(m.detach()), rtol=1e-10, atol=1e-12)
    (g_ref,) = torch.autograd.grad((w * torch.logdet(m)).sum(), m)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
