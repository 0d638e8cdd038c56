"""torch.compile: a whole FEC model (one block per stage) traces as one graph with static shapes (no graph
break, no recompile for new data), and Inductor's code for a block and a pool matches eager."""
import pytest
import timm
import torch

import dist_cluster.models  # noqa: F401
from dist_cluster.models.fec_layers import ClusterPool, FecBlock

torch.set_num_threads(1)


def _fwd_bwd(model, x, fn=None):
    out = (model if fn is None else fn)(x)
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out.detach(), grads


def _close(a, b, tol):
    torch.testing.assert_close(a[0], b[0], atol=tol, rtol=tol)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], atol=tol, rtol=tol, msg=name)


@pytest.mark.parametrize("opts", [{}, {"assign_on": "refined", "agg_weight": "sim"}])
def test_whole_model_is_one_graph_without_recompiles(opts):
    torch.manual_seed(0)
    model = timm.create_model("fec_small", num_classes=10, depths=(1, 1, 1, 1), **opts).double().train()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)   # fullgraph: a break is an error
    for seed in (1, 2):
        x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        with torch._dynamo.config.patch(error_on_recompile=seed > 1):
            _close(_fwd_bwd(model, x, compiled), _fwd_bwd(model, x), 1e-10)


@pytest.mark.slow   # Inductor builds C++ kernels: ~40 s on 2 cores
def test_inductor_block_and_pool_match_eager():
    torch.manual_seed(0)
    torch._dynamo.reset()
    x = torch.randn(2, 16, 8, 8)
    for module in (FecBlock(16, 2, heads=2, head_dim=8, centres=2, ls_init=0.5), ClusterPool(16, 32, "sim")):
        _close(_fwd_bwd(module, x, torch.compile(module, fullgraph=True)), _fwd_bwd(module, x), 1e-4)
