"""The GEMM-based layers against the original arithmetic (tests/fec/fec_reference.py) in float64: logits,
assignments and every gradient to 1e-8, for the paper's options and the reference code's."""
import pytest
import timm
import torch
from fec_reference import forward as reference_forward

import dist_cluster.models  # noqa: F401

torch.set_num_threads(1)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("opts,px", [({}, 64), ({"assign_on": "refined", "agg_weight": "sim"}, 64),
                                     ({}, (96, 64))])
def test_logits_assignments_and_gradients_match_the_original_in_float64(opts, px):
    torch.manual_seed(0)
    model = timm.create_model("fec_small", num_classes=10, **opts).double().train()
    with torch.no_grad():   # larger layer scales and non-trivial α, β: the branches matter
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.2, 1.0)
            elif name.endswith("sim_alpha"):
                p.uniform_(0.5, 2.0)
            elif name.endswith("sim_beta"):
                p.uniform_(-0.5, 0.5)
    h, w = px if isinstance(px, tuple) else (px, px)
    x = torch.randn(3, 3, h, w, dtype=torch.float64)
    y = torch.tensor([1, 4, 7])
    logits, trace = model(x, return_assignments=True)
    torch.nn.functional.cross_entropy(logits, y).backward()
    ours = _grads(model)
    model.zero_grad(set_to_none=True)
    ref_logits, ref_a = reference_forward(model, x)
    torch.nn.functional.cross_entropy(ref_logits, y).backward()
    ref = _grads(model)
    assert all(torch.equal(a, b) for a, b in zip(trace.assignments, ref_a))
    torch.testing.assert_close(logits, ref_logits, atol=1e-8, rtol=1e-8)
    assert ours.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], atol=1e-8, rtol=1e-8, msg=name)


def test_channels_last_input_gives_the_same_logits():
    torch.manual_seed(1)
    model = timm.create_model("fec_small", num_classes=10).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), model(x), atol=1e-12,
                                   rtol=0)
