"""fec_ops: the one-hot GEMMs equal scatter_add/gather, the chunked argmax equals the whole matrix's (ties to
the first index), and 1×1 convolutions as GEMMs equal Conv2d."""
import pytest
import torch
import torch.nn.functional as F

from dist_cluster.models import fec_ops
from dist_cluster.models.fec_ops import aggregate, dispatch, nearest_centre, one_hot, pointwise, unit_centres

torch.set_num_threads(1)


def _inputs(dtype, o=8, n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(3, 5, n, generator=g).to(dtype)
    cv = torch.randn(3, 5, o, generator=g).to(dtype)
    a = torch.randint(0, o - 1, (3, n), generator=g)          # the last centre stays empty
    w = torch.rand(3, n, generator=g).to(dtype)
    return v, cv, a, w


@pytest.mark.parametrize("weighted", [False, True])
def test_one_hot_aggregation_equals_scatter(monkeypatch, weighted):
    v, cv, a, w = _inputs(torch.float64)
    gemm = aggregate(v, cv, a, w if weighted else None)
    monkeypatch.setattr(fec_ops, "ONE_HOT_MAX_CENTRES", 0)
    torch.testing.assert_close(gemm, aggregate(v, cv, a, w if weighted else None), atol=1e-14, rtol=0)
    # bf16: both paths are the float32 computation on the same bf16 values, rounded once
    vb, cvb, wb = v.bfloat16(), cv.bfloat16(), w.bfloat16()
    scatter = aggregate(vb, cvb, a, wb if weighted else None)
    monkeypatch.setattr(fec_ops, "ONE_HOT_MAX_CENTRES", 16)
    ref = aggregate(vb.float(), cvb.float(), a, wb.float() if weighted else None).bfloat16()
    assert torch.equal(aggregate(vb, cvb, a, wb if weighted else None), ref)
    assert (scatter.float() - ref.float()).abs().max() <= 2 ** -7 * ref.float().abs().max()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_one_hot_dispatch_is_exactly_the_gather(dtype):
    v, cv, a, w = _inputs(dtype)
    r = cv.clone().requires_grad_(True)
    gathered = torch.gather(r, 2, a.unsqueeze(1).expand(-1, r.shape[1], -1)) * w.unsqueeze(1)
    out = dispatch(r, a, w)
    assert out.dtype == dtype and torch.equal(out, gathered)
    g = torch.randn(out.shape, dtype=torch.float64).to(dtype)
    (ours,) = torch.autograd.grad(out, r, g)
    (ref,) = torch.autograd.grad(gathered, r, g)
    torch.testing.assert_close(ours, ref, atol=1e-12 if dtype == torch.float64 else 0.05, rtol=1e-2)
    assert one_hot(a, 8, dtype).sum(2).eq(1).all()


def test_chunked_argmax_equals_the_whole_matrix_and_keeps_the_first_of_ties():
    g = torch.Generator().manual_seed(0)
    k, ck = torch.randn(2, 6, 50, generator=g), torch.randn(2, 6, 7, generator=g)
    ck[:, :, 5] = ck[:, :, 2]                             # two equal centres: every key nearest them ties
    k[:, :, :10] = ck[:, :, 2:3] * 3.0                    # ten keys on their direction
    cn = unit_centres(ck)
    whole = torch.einsum("bco,bcn->bon", cn, F.normalize(k, dim=1)).argmax(1)
    for chunk in (1, 7 * 2 * 3, 10 ** 9):                 # 1 column, 3 columns (uneven last chunk), all
        got = nearest_centre(k, cn, chunk_elements=chunk)
        assert torch.equal(got, whole)
    assert (whole[:, :10] == 2).all() and (whole == 2).sum() > 10 and not (whole == 5).any()


@pytest.mark.parametrize("hw", [(5, 7), (16, 16)])           # one GEMM over all pixels; per-image GEMMs
def test_pointwise_equals_conv2d(hw):
    conv = torch.nn.Conv2d(6, 10, 1).double()
    x = torch.randn(2, 6, *hw, dtype=torch.float64)
    torch.testing.assert_close(pointwise(x, conv.weight, conv.bias), conv(x), atol=1e-13, rtol=0)
    torch.testing.assert_close(pointwise(x, conv.weight, None), conv(x) - conv.bias.view(1, -1, 1, 1), atol=1e-13,
                               rtol=0)
    assert pointwise(x, conv.weight, conv.bias).is_contiguous()


def test_pool_never_holds_the_whole_similarity_matrix(monkeypatch):
    from torch.utils._python_dispatch import TorchDispatchMode

    from dist_cluster.models.fec_layers import ClusterPool

    class Largest(TorchDispatchMode):
        most = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    Largest.most = max(Largest.most, t.numel())
            return out

    monkeypatch.setattr(fec_ops, "SCORE_ELEMENTS", 1 << 14)
    pool, x = ClusterPool(8, 16), torch.randn(2, 8, 32, 32)
    ref = pool(x)
    with Largest():
        out = pool(x)
    whole = 2 * 1024 * 256                                # B × N × N/4
    assert Largest.most <= max(x.numel() * 2, 1 << 14) < whole // 8
    assert torch.equal(out, ref)
