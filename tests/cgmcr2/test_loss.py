"""The full CgMCR² objective −R + Rc + L_Ncut: 2 gloo ranks == 1 process (value and gradient, float64), and
the warm-up's gradient separation (SPEC CgMCR² §7)."""
import pytest
import torch
from dist_utils import BACKENDS, run_world

from dist_cluster.config import ExperimentConfig
from dist_cluster.methods.base import Stage, total_loss
from dist_cluster.methods.cgmcr2.config import CgMCR2Config
from dist_cluster.methods.cgmcr2.loss import CgMCR2Objective
from dist_cluster.methods.cgmcr2.method import CgMCR2

torch.set_num_threads(1)

PAPER = {}
CODE = {"affinity": "code", "detach_affinity": False, "degree": "col", "orth_form": "code", "eps_is_squared": True}
DENSE = {"affinity": "gaussian", "post": "ds", "symmetrize": True, "orth_form": "paper"}
FULL = {"R": 1.0, "Rc": 1.0, "ncut": 1.0}


def _inputs(n=16, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=g, dtype=torch.float64)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64)
    noise = -torch.log(-torch.log(torch.rand(n, k, generator=g, dtype=torch.float64)))   # Gumbel, fixed
    return f, logits, noise


def _objective(opts):
    m = CgMCR2Config(k=3, s=4, gamma=7.0, eps=0.5, **opts)
    obj = CgMCR2Objective(m).double()
    if obj.threshold is not None:
        obj.threshold.data.fill_(0.3)
    return obj


def _loss(obj, f, logits, noise):
    z = torch.nn.functional.normalize(f, dim=1)
    pi = torch.softmax(logits + noise, dim=1)          # Gumbel-softmax with τ = 1 and the given noise
    out = obj(z, pi, FULL, f=f)
    return total_loss(out, Stage("t", 1, loss_weights=FULL)), out


def _rank_fn(rank, world, cases):
    res = []
    for opts, f_all, l_all, noise in cases:
        obj = _objective(opts)
        n = len(f_all) // world
        rows = slice(rank * n, (rank + 1) * n)
        f, logits = f_all[rows].clone().requires_grad_(True), l_all[rows].clone().requires_grad_(True)
        loss, out = _loss(obj, f, logits, noise[rows])
        loss.backward()
        tg = obj.threshold.grad / world if obj.threshold is not None else None
        res.append((loss.item(), {k: v.item() for k, v in out.items()}, f.grad / world, logits.grad / world, tg))
    return res


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_loss_two_ranks_equal_one_process(backend):
    cases = [(opts, *_inputs(seed=i)) for i, opts in enumerate((PAPER, CODE, DENSE))]
    res = run_world(_rank_fn, 2, cases, backend=backend)
    for c, (opts, f_all, l_all, noise) in enumerate(cases):
        obj = _objective(opts)
        f, logits = f_all.clone().requires_grad_(True), l_all.clone().requires_grad_(True)
        loss, out = _loss(obj, f, logits, noise)
        loss.backward()
        assert set(out) >= {"loss/R", "loss/Rc", "loss/ncut"}
        for rank in range(2):
            v, terms, gf, gl, tg = res[rank][c]
            rows = slice(rank * 8, (rank + 1) * 8)
            assert v == pytest.approx(loss.item(), rel=1e-11), opts
            for k in out:
                assert terms[k] == pytest.approx(out[k].item(), rel=1e-9, abs=1e-12), (opts, k)
            torch.testing.assert_close(gf, f.grad[rows], rtol=1e-9, atol=1e-11)
            torch.testing.assert_close(gl, logits.grad[rows], rtol=1e-9, atol=1e-11)
        if obj.threshold is not None:   # a parameter: the engine averages the ranks' gradients
            assert res[0][c][4] + res[1][c][4] == pytest.approx(obj.threshold.grad.item(), rel=1e-9)


def _method(**opts):
    m = CgMCR2Config(in_dim=12, hidden=32, feature_dim=8, k=3, s=5, **opts)
    torch.manual_seed(0)
    return CgMCR2(ExperimentConfig(method=m)).double()


def test_warmup_gradients_are_separated():
    method = _method(activation="softmax")
    warm = method.stages()[0]
    assert warm.name == "warmup" and warm.weight("Rc") == 0
    x = torch.randn(24, 12, dtype=torch.float64)
    out = method({"feature": x}, warm)
    heads = {"feature_head": method.feature_head, "cluster_head": method.cluster_head, "pre": method.pre}
    grads = {}
    for term in ("loss/R", "loss/ncut"):
        method.zero_grad()
        out[term].backward(retain_graph=True)
        grads[term] = {name: sum(float(p.grad.abs().sum()) for p in mod.parameters() if p.grad is not None)
                       for name, mod in heads.items()}
    assert grads["loss/ncut"]["feature_head"] == 0 and grads["loss/ncut"]["cluster_head"] > 0
    assert grads["loss/R"]["cluster_head"] == 0 and grads["loss/R"]["feature_head"] > 0
    assert grads["loss/R"]["pre"] > 0 and grads["loss/ncut"]["pre"] > 0      # the shared layer gets both
    assert not out["loss/Rc"].requires_grad                                 # weight 0: logged, no gradient


def test_stages_follow_the_paper_schedule_and_table6_variants():
    stages = _method(warmup_epochs=20, finetune_epochs=30).stages()
    assert [(s.name, s.epochs, s.sched) for s in stages] == [("warmup", 20, "constant"), ("finetune", 30, None)]
    assert stages[1].loss_weights == FULL
    none_then_full = _method(warmup_epochs=0, finetune_weights={"R": 1.0, "Rc": 1.0, "ncut": 0.0}).stages()
    assert [s.name for s in none_then_full] == ["finetune"] and none_then_full[0].weight("ncut") == 0
    with pytest.raises(ValueError):
        _method(affinity="euclid")
