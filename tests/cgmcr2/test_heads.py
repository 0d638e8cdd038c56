"""CgMCR² heads: parameter count, global-batch BatchNorm (1 process == nn.BatchNorm1d, 2 ranks == 1 process),
Gumbel-softmax memberships."""
import pytest
import torch
from dist_utils import run_world
from torch import nn

from dist_cluster.models.heads import (
    ClusterHead,
    FeatureHead,
    GlobalBatchNorm1d,
    count_parameters,
    memberships,
    mlp,
    pre_feature_layer,
)

torch.set_num_threads(1)


def test_parameter_count_of_the_paper_model():
    pre, f, g = pre_feature_layer(768, 4096), FeatureHead(4096, 128), ClusterHead(4096, 10)
    assert (count_parameters(pre), count_parameters(f), count_parameters(g)) == (3_158_016, 17_305_728,
                                                                                 16_822_282)
    assert count_parameters(pre) + count_parameters(f) + count_parameters(g) == 37_286_026


def test_mlp_layout_and_feature_head_normalises():
    net = mlp([8, 16, 16, 4], norm=True)
    assert [type(m).__name__ for m in net] == ["Linear", "GlobalBatchNorm1d", "ReLU", "Linear",
                                               "GlobalBatchNorm1d", "ReLU", "Linear"]
    head = FeatureHead(16, 5, n_hidden=2)
    f, z = head(torch.randn(7, 16))
    assert f.shape == z.shape == (7, 5)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(7))
    torch.testing.assert_close(z, f / f.norm(dim=1, keepdim=True))


def test_single_process_global_bn_is_batchnorm1d():
    torch.manual_seed(0)
    ours, ref = GlobalBatchNorm1d(6), nn.BatchNorm1d(6)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(10, 6) * 3 + 1
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x), ref(x))


def _bn_rank(rank, world, x_all, w, b):
    bn = GlobalBatchNorm1d(x_all.shape[1]).double()
    bn.weight.data.copy_(w), bn.bias.data.copy_(b)
    n = len(x_all) // world
    x = x_all[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    from dist_cluster.distributed import all_gather_with_grad
    y = all_gather_with_grad(bn(x))
    loss = (y ** 3).sum() + (y[:, 0] * y[:, 1]).sum()     # a loss that mixes samples and features
    loss.backward()
    return y.detach(), x.grad / world, bn.weight.grad / world, bn.running_mean, bn.running_var


def test_two_rank_global_bn_equals_one_process_batchnorm():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64) * 2 + 0.5
    w, b = torch.rand(3, generator=g, dtype=torch.float64) + 0.5, torch.randn(3, generator=g, dtype=torch.float64)
    ref = nn.BatchNorm1d(3).double()
    ref.weight.data.copy_(w), ref.bias.data.copy_(b)
    xl = x.clone().requires_grad_(True)
    y = ref(xl)
    ((y ** 3).sum() + (y[:, 0] * y[:, 1]).sum()).backward()
    res = run_world(_bn_rank, 2, x, w, b)
    # the engine's data-parallel mean of the parameter gradients
    torch.testing.assert_close(res[0][2] + res[1][2], ref.weight.grad, rtol=1e-10, atol=1e-12)
    for rank, (y2, gx, _, rm, rv) in enumerate(res):
        rows = slice(rank * 6, (rank + 1) * 6)
        torch.testing.assert_close(y2, y.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gx, xl.grad[rows], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(rm, ref.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rv, ref.running_var, rtol=1e-12, atol=1e-12)


def test_memberships():
    logits = torch.randn(50, 7) * 3
    for act in ("gumbel", "softmax"):
        pi = memberships(logits, act)
        assert ((pi >= 0) & (pi <= 1)).all()
        torch.testing.assert_close(pi.sum(1), torch.ones(50))
    torch.testing.assert_close(memberships(logits, "softmax", tau=2.0), torch.softmax(logits / 2, 1))
    assert not torch.allclose(memberships(logits, "gumbel"), memberships(logits, "gumbel"))   # noise is drawn
    assert memberships(logits.bfloat16(), "softmax").dtype == torch.float32
    with pytest.raises(ValueError):
        memberships(logits, "sparsemax")
