"""ClusterEnc / ClusterPool against explicit loop references of Eq. 4-7 and 9, on hand-made and random inputs."""
import math

import pytest
import torch
import torch.nn.functional as F

from dist_cluster.models.fec_layers import ClusterEnc, ClusterPool, aggregate, assign, dispatch

torch.set_num_threads(1)


def window_means(x, p):
    """Adaptive-average-pool centres written from PyTorch's documented window rule (start floor, end ceil)."""
    c, h, w = x.shape
    out = []
    for i in range(p[0]):
        r0, r1 = (i * h) // p[0], math.ceil((i + 1) * h / p[0])
        for j in range(p[1]):
            c0, c1 = (j * w) // p[1], math.ceil((j + 1) * w / p[1])
            out.append(x[:, r0:r1, c0:c1].reshape(c, -1).mean(1))
    return torch.stack(out)                                   # (O, C)


def loop_cluster(k, v, p, alpha=None, beta=None, weight_by_sim=False):
    """One image, one head: k, v (C, H, W). Returns (assignments, R, dispatched (C, N), selected similarity)."""
    ck, cv = window_means(k, p), window_means(v, p)
    kf, vf = k.reshape(k.shape[0], -1).T, v.reshape(v.shape[0], -1).T    # (N, C)
    n_pix, n_c = kf.shape[0], ck.shape[0]
    a, sel = [], []
    for n in range(n_pix):
        sims = [torch.dot(ck[o], kf[n]) / (ck[o].norm() * kf[n].norm()) for o in range(n_c)]
        best = max(range(n_c), key=lambda o: float(sims[o].detach()))
        a.append(best)
        sel.append(sims[best] if alpha is None else torch.sigmoid(beta + alpha * sims[best]))
    r = []
    for o in range(n_c):
        members = [n for n in range(n_pix) if a[n] == o]
        total = cv[o].clone()
        for n in members:
            total = total + (sel[n] if weight_by_sim else 1.0) * vf[n]
        r.append(total / (1 + len(members)))
    d = torch.stack([sel[n] * r[a[n]] for n in range(n_pix)], dim=1)
    return torch.tensor(a), torch.stack(r), d, torch.stack(sel)


def test_hand_made_assignment_and_mean():
    # centres along the axes; pixels equal to a centre go to it, the others by angle
    ck = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]).transpose(1, 2)          # (1, C=2, O=2)
    k = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [3.0, 0.1], [0.1, -5.0], [0.2, 4.0]]]).transpose(1, 2)
    a = assign(k, ck)
    assert a.tolist() == [[0, 1, 0, 0, 1]]
    v = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0]]])                         # (1, C=1, N=5)
    cv = torch.tensor([[[10.0, 20.0]]])
    r = aggregate(v, cv, a)
    assert torch.allclose(r, torch.tensor([[[(10 + 1 + 3 + 4) / 4, (20 + 2 + 5) / 3]]]))
    s = torch.tensor([[0.5, 1.0, 2.0, 1.0, 0.0]])
    d = dispatch(r, a, s)
    assert torch.allclose(d, torch.tensor([[[4.5 * 0.5, 9.0, 9.0, 4.5, 0.0]]]))
    # an empty centre keeps its own value centre (1 + 0 members)
    assert torch.allclose(aggregate(v, cv, torch.zeros_like(a))[0, 0, 1], torch.tensor(20.0))


@pytest.mark.parametrize("hw,centres", [((7, 7), 2), ((8, 6), 3), ((8, 8), 4)])
@pytest.mark.parametrize("assign_on,agg_weight", [("sim", "none"), ("refined", "sim")])
def test_cluster_enc_matches_loop_reference(hw, centres, assign_on, agg_weight):
    torch.manual_seed(0)
    heads, e = 2, 5
    enc = ClusterEnc(12, heads, e, centres, assign_on, agg_weight).double()
    with torch.no_grad():
        enc.sim_alpha.fill_(1.7)
        enc.sim_beta.fill_(-0.3)
    x = torch.randn(2, 12, *hw, dtype=torch.float64)
    k, v = enc.f(x), enc.v(x)
    out = enc(x)
    ref = torch.zeros(2, heads * e, hw[0] * hw[1], dtype=torch.float64)
    for b in range(2):
        for h in range(heads):
            sl = slice(h * e, (h + 1) * e)
            _, _, d, _ = loop_cluster(k[b, sl], v[b, sl], (centres, centres), enc.sim_alpha, enc.sim_beta,
                                      weight_by_sim=agg_weight == "sim")
            ref[b, sl] = d
    ref_out = enc.proj(ref.reshape(2, heads * e, *hw))
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)


def test_cluster_pool_matches_loop_reference():
    torch.manual_seed(1)
    pool = ClusterPool(6, 10).double()
    x = torch.randn(3, 6, 8, 8, dtype=torch.float64)
    trace = []
    out = pool(x, trace)
    k, v = pool.conv_f(x), pool.conv_v(x)
    rs = []
    for b in range(3):
        a, r, _, _ = loop_cluster(k[b], v[b], (4, 4))
        assert torch.equal(trace[0].assignments[b], a)
        rs.append(r.T.reshape(10, 4, 4))
    ref = pool.conv_skip(x) + pool.norm(torch.stack(rs))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(trace[0].values, torch.stack([r.reshape(10, 16).T for r in rs]))


def test_heads_equal_independent_single_head_modules():
    torch.manual_seed(2)
    heads, e, dim = 3, 4, 16
    multi = ClusterEnc(dim, heads, e, 2).double()
    x = torch.randn(2, dim, 8, 8, dtype=torch.float64)
    total = 0
    for h in range(heads):
        single = ClusterEnc(dim, 1, e, 2).double()
        sl = slice(h * e, (h + 1) * e)
        with torch.no_grad():
            for name in ("f", "v"):
                getattr(single, name).weight.copy_(getattr(multi, name).weight[sl])
                getattr(single, name).bias.copy_(getattr(multi, name).bias[sl])
            single.proj.weight.copy_(multi.proj.weight[:, sl])
            single.proj.bias.copy_(multi.proj.bias if h == 0 else torch.zeros_like(multi.proj.bias))
            single.sim_alpha.copy_(multi.sim_alpha)
            single.sim_beta.copy_(multi.sim_beta)
        total = total + single(x)
        torch.testing.assert_close(multi.cluster(multi.f(x), multi.v(x))[:, sl],
                                   single.cluster(single.f(x), single.v(x)), atol=1e-12, rtol=0)
    torch.testing.assert_close(multi(x), total, atol=1e-12, rtol=1e-12)


def test_pool_indices_in_range_and_counts_sum_to_n():
    torch.manual_seed(3)
    pool = ClusterPool(8, 16)
    trace = []
    y = pool(torch.randn(4, 8, 16, 12), trace)
    a = trace[0].assignments
    assert y.shape == (4, 16, 8, 6) and a.shape == (4, 192) and a.dtype == torch.long
    assert int(a.min()) >= 0 and int(a.max()) < 48
    counts = torch.stack([torch.bincount(row, minlength=48) for row in a])
    assert counts.sum(1).tolist() == [192] * 4


def test_refined_assignment_equals_plain_while_alpha_positive_and_flips_when_negative():
    torch.manual_seed(4)
    k, ck = torch.randn(2, 6, 30), torch.randn(2, 6, 4)
    plain = assign(k, ck)
    assert torch.equal(assign(k, ck, torch.tensor([0.3]), torch.tensor([2.0])), plain)
    cos = torch.einsum("bco,bcn->bon", F.normalize(ck, dim=1), F.normalize(k, dim=1))
    assert torch.equal(assign(k, ck, torch.tensor([-1.0]), torch.tensor([0.0])), cos.argmin(1))


def test_pool_key_is_frozen_unless_similarity_weighted():
    x = torch.randn(2, 4, 8, 8)
    frozen, weighted = ClusterPool(4, 8), ClusterPool(4, 8, agg_weight="sim")
    assert not frozen.conv_f.weight.requires_grad
    frozen(x).sum().backward()
    weighted(x).square().sum().backward()
    assert frozen.conv_f.weight.grad is None and frozen.conv_v.weight.grad is not None
    assert weighted.conv_f.weight.grad is not None and weighted.conv_f.weight.grad.abs().sum() > 0


def test_bf16_forward_runs_and_assigns_in_fp32():
    torch.manual_seed(5)
    enc = ClusterEnc(8, 2, 4, 2)
    x = torch.randn(2, 8, 8, 8)
    ref = enc(x)
    out = enc.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()
