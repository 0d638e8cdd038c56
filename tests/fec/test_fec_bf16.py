"""FEC's cluster aggregation under DeepSpeed's bf16 mode: counts and sums accumulate in float32 (bf16 stops
counting at 256), so bf16 results equal the float32 computation on the same bf16 values, rounded once."""
import torch

from dist_cluster.models.fec_layers import ClusterPool, aggregate

SIZES = (300, 1200, 5000, 5500)      # stage-1 clusters hold ~196 pixels on average, thousands at the tail


def _inputs():
    g = torch.Generator().manual_seed(0)
    a = torch.cat([torch.full((s,), o) for o, s in enumerate(SIZES)])[torch.randperm(sum(SIZES), generator=g)]
    v = (torch.rand(2, 6, a.numel(), generator=g) + 0.5).bfloat16()
    cv = torch.randn(2, 6, len(SIZES), generator=g).bfloat16()
    return v, cv, a.expand(2, -1).contiguous()


def test_bf16_aggregation_counts_every_member():
    v, cv, a = _inputs()
    low = aggregate(v, cv, a)
    ref = aggregate(v.float(), cv.float(), a)
    assert low.dtype == torch.bfloat16
    assert torch.equal(low, ref.bfloat16())
    # the exact float64 means: each centre is (Cv + Σ members) / (1 + members), counted exactly
    exact = torch.stack([(cv.double()[:, :, o] + v.double()[:, :, a[0] == o].sum(2)) / (1 + s)
                         for o, s in enumerate(SIZES)], dim=2)
    assert torch.allclose(low.double(), exact, rtol=2 ** -7, atol=0)


def test_bf16_weighted_aggregation_matches_float32():
    v, cv, a = _inputs()
    w = torch.rand(a.shape, generator=torch.Generator().manual_seed(1)).bfloat16()
    assert torch.equal(aggregate(v, cv, a, w), aggregate(v.float(), cv.float(), a, w.float()).bfloat16())


def test_bf16_pool_follows_float32_pool():
    torch.manual_seed(0)
    pool = ClusterPool(8, 16)
    x = torch.randn(2, 8, 64, 64)
    ref = pool(x)
    low = pool.to(torch.bfloat16)(x.bfloat16())
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().mean() < 0.02 * ref.abs().mean()
