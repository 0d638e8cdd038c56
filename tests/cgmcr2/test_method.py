"""The CgMCR² method without the engine: whole-model gradients on 2 ranks == 1 process (pre-feature BN with
global statistics included), prediction, evaluation in index order, CgMCR²-SC and the classical baselines."""
import numpy as np
import pytest
import torch
from dist_utils import BACKENDS, run_world

from dist_cluster.config import ExperimentConfig
from dist_cluster.eval import cluster_metrics
from dist_cluster.methods.base import total_loss
from dist_cluster.methods.cgmcr2.config import CgMCR2Config
from dist_cluster.methods.cgmcr2.method import CgMCR2
from dist_cluster.methods.cgmcr2.report import classical_baseline, format_table
from dist_cluster.methods.cgmcr2.spectral import spectral_on_embeddings

torch.set_num_threads(1)


def _method(**opts):
    m = CgMCR2Config(in_dim=12, hidden=32, feature_dim=8, k=3, s=5, activation="softmax", **opts)
    torch.manual_seed(0)
    return CgMCR2(ExperimentConfig(method=m)).double()


def blobs(n_per=40, k=3, dim=12, seed=0, spread=0.15):
    g = np.random.default_rng(seed)
    centres = g.normal(size=(k, dim)) * 3
    x = np.concatenate([c + spread * g.normal(size=(n_per, dim)) for c in centres])
    y = np.repeat(np.arange(k), n_per)
    return torch.from_numpy(x), torch.from_numpy(y)


def _step(method, x, stage_index):
    stage = method.stages()[stage_index]
    loss = total_loss(method({"feature": x}, stage), stage)
    method.zero_grad()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}


def _rank_fn(rank, world, x_all):
    method = _method()
    n = len(x_all) // world
    out = [_step(method, x_all[rank * n:(rank + 1) * n], s) for s in (0, 1)]
    bn = method.pre[1]
    return out, bn.running_mean.clone(), bn.running_var.clone()


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_gradients_two_ranks_equal_one_process(backend):
    x, _ = blobs(n_per=8)                 # 24 samples: 12 per rank
    res = run_world(_rank_fn, 2, x, backend=backend)
    ref = _method()
    for s in (0, 1):                     # warm-up, then fine-tune (with Rc), BN statistics updated twice
        loss, grads = _step(ref, x, s)
        assert len(grads) == len(list(ref.parameters()))
        for rank in range(2):
            assert res[rank][0][s][0] == pytest.approx(loss, rel=1e-10)
        for name, g in grads.items():    # the engine's data-parallel mean of the ranks' gradients
            mean = (res[0][0][s][1][name] + res[1][0][s][1][name]) / 2
            torch.testing.assert_close(mean, g, rtol=1e-8, atol=1e-10, msg=f"{name} at stage {s}")
    bn = ref.pre[1]
    for rank in range(2):
        torch.testing.assert_close(res[rank][1], bn.running_mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(res[rank][2], bn.running_var, rtol=1e-10, atol=1e-12)


def test_predict_is_deterministic_and_labels_are_argmax():
    method = _method().eval()
    x, _ = blobs()
    a, b = method.predict(x, batch_size=7), method.predict(x, batch_size=50)
    torch.testing.assert_close(a["logits"], b["logits"])
    assert torch.equal(a["labels"], a["logits"].argmax(1))
    torch.testing.assert_close(a["z"].norm(dim=1), torch.ones(len(x)))


def test_normalize_input_ignores_each_rows_scale():
    x, _ = blobs()
    scaled = x * torch.linspace(0.1, 10.0, len(x)).double().unsqueeze(1)
    plain, normed = _method().eval(), _method(normalize_input=True).eval()
    assert not torch.allclose(plain.predict(x)["logits"], plain.predict(scaled)["logits"])
    torch.testing.assert_close(normed.predict(x)["logits"], normed.predict(scaled)["logits"])


def test_spectral_on_embeddings_and_baselines_recover_separated_clusters():
    x, y = blobs(n_per=50, k=4, dim=6, seed=2, spread=0.05)
    z = torch.nn.functional.normalize(x.float(), dim=1)
    assert cluster_metrics(y, spectral_on_embeddings(z, 4, s=60))["acc"] == 1.0
    for name in ("kmeans", "spectral"):
        assert cluster_metrics(y, classical_baseline(name, x.numpy(), 4, seed=0))["acc"] == 1.0
    with pytest.raises(ValueError):
        classical_baseline("dbscan", x.numpy(), 4, seed=0)
    text = format_table({"cgmcr2": {"acc": 1.0, "nmi": 0.5, "ari": 0.25, "time_s": 1.5}}, "t")
    assert "CgMCR² (argmax of g)" in text and "0.5000" in text
