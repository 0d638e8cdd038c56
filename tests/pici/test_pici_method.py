"""PICI's method logic without the engine: stages, what each stage computes, pseudo-label bookkeeping,
per-epoch matching, and (2 gloo ranks) the whole training step and pseudo-label pass against one process."""
import pytest
import torch
from dist_utils import BACKENDS, run_world

from dist_cluster.config import ExperimentConfig
from dist_cluster.methods.pici.boost import epoch_matching, kmeans_features, two_view_pass
from dist_cluster.methods.pici.method import PICI

from common.pici import tiny_pici

torch.set_num_threads(1)


def make(mask_ratio=0.5, **method):
    cfg = ExperimentConfig(name="t", method=tiny_pici(4), seed=3)
    cfg.data.image_size, cfg.data.in_chans = 8, 3
    cfg.method.mask_ratio = mask_ratio
    for k, v in method.items():
        setattr(cfg.method, k, v)
    torch.manual_seed(0)
    return PICI(cfg)


def batch(n=12, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return {"views": [torch.randn(n, 3, 8, 8, generator=g, dtype=dtype) for _ in range(2)],
            "index": torch.randperm(n, generator=g), "label": torch.zeros(n, dtype=torch.long)}


def test_three_stages_train_the_papers_modules_with_unit_weights():
    m = make()
    s = {st.name: st for st in m.stages()}
    assert [st.name for st in m.stages()] == ["pretrain", "train", "boost"]
    assert [st.epochs for st in m.stages()] == [2, 6, 2]
    assert s["pretrain"].train == ("encoder", "decoder")
    assert set(s["train"].train) == {"encoder", "decoder", "instance_head", "cluster_head"}
    assert set(s["boost"].train) == {"encoder", "instance_head", "cluster_head"}
    assert [s["boost"].weight(t) for t in ("pisd", "ins", "clu", "cli")] == [0, 1, 1, 1]
    assert [st.name for st in make(train_epochs=0).stages()] == ["pretrain", "boost"]
    with pytest.raises(ValueError):
        make(match_scope="sometimes")


def test_each_stage_computes_only_its_terms_and_reaches_only_its_modules():
    m = make()
    m.pseudo = torch.randint(0, 4, (2, 12))
    groups = m.param_groups()
    expected = {"pretrain": ({"loss/pisd"}, {"encoder", "decoder"}),
                "train": ({"loss/pisd", "loss/ins", "loss/clu"}, set(groups)),
                "boost": ({"loss/ins", "loss/clu", "loss/cli"}, {"encoder", "instance_head", "cluster_head"})}
    for st in m.stages():
        m.zero_grad(set_to_none=True)
        out = m(batch(), st)
        terms, reached = expected[st.name]
        assert {k for k in out if k.startswith("loss/")} == terms
        sum(v for k, v in out.items() if k.startswith("loss/")).backward()
        for name, params in groups.items():
            has_grad = any(p.grad is not None for p in params)
            assert has_grad == (name in reached), (st.name, name)


def test_boost_targets_are_the_matched_pseudo_labels_of_each_sample_index():
    m = make()
    st = m.stages()[2]
    m.pseudo = torch.stack([torch.arange(12) % 4, (torch.arange(12) + 1) % 4])
    m.mapping.copy_(torch.tensor([[2, 3, 0, 1], [1, 0, 3, 2]]))
    b = batch()
    with torch.no_grad():
        c_a, c_b = m.net(b["views"][0], 0.5)["c"], m.net(b["views"][1], 0.5)["c"]
    t = m._cli_targets(b["index"], c_a, c_b)
    assert torch.equal(t[0], torch.tensor([2, 3, 0, 1])[b["index"] % 4])
    assert torch.equal(t[1], torch.tensor([1, 0, 3, 2])[(b["index"] + 1) % 4])
    m.pseudo[0, 5] = -1
    with pytest.raises(RuntimeError):
        m(b, st)


def test_epoch_matching_recovers_the_permutation():
    g = torch.Generator().manual_seed(0)
    p = torch.randint(0, 5, (2, 300), generator=g)
    perms = [torch.randperm(5, generator=g) for _ in range(2)]
    heads = [torch.nn.functional.one_hot(perms[k][p[k]], 5).float() for k in range(2)]
    mapping, stats = epoch_matching(p, heads, 5)
    assert torch.equal(mapping, torch.stack(perms))
    assert stats["cli/nmi_pseudo_head_a"] == pytest.approx(1.0) and stats["cli/matched_agreement_b"] == 1.0


def test_minmax_features_are_scaled_per_chunk_and_l2_features_are_unit_norm():
    z = torch.randn(10, 3) * 5
    x = kmeans_features(z, "minmax", batch_size=4)
    for s in (0, 4, 8):
        assert x[s:s + 4].amin(0).abs().max() < 1e-12 and (x[s:s + 4].amax(0) - 1).abs().max() < 1e-12
    assert torch.allclose(kmeans_features(z, "l2").norm(dim=1), torch.ones(10, dtype=torch.float64))
    with pytest.raises(ValueError):
        kmeans_features(z, "zscore")


def test_evaluation_without_masking_is_deterministic():
    m = make().eval()
    x = batch()["views"][0]
    with torch.no_grad():
        assert torch.equal(m.net(x, 0.0)["c"], m.net(x, 0.0)["c"])


# --- 2 ranks == 1 process (SPEC P8 DDP smoke test) ---------------------------------------------------------
PSEUDO = torch.stack([torch.arange(12) % 4, torch.arange(12) // 3])
MAPPING = torch.tensor([[1, 2, 3, 0], [0, 1, 2, 3]])


def _step(m, b, stage_index):
    m.zero_grad(set_to_none=True)
    out = m(b, m.stages()[stage_index])
    sum(v for k, v in out.items() if k.startswith("loss/")).backward()
    losses = {k: float(v.detach()) for k, v in out.items() if k.startswith("loss/")}
    return losses, {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def _pass(rank, world, views, index):
    m = make(mask_ratio=0.0).eval()
    own = index[rank::world]
    batches = [{"views": [v[own[s:s + 4]] for v in views], "index": own[s:s + 4]} for s in range(0, len(own), 4)]
    return two_view_pass(m.net, batches, 0.0, "cpu", torch.float32)


def _on_rank(rank, world, full, views, index):
    m = make(mask_ratio=0.0).double()
    m.pseudo, _ = PSEUDO.clone(), m.mapping.copy_(MAPPING)
    rows = slice(rank * 6, (rank + 1) * 6)
    shard = {"views": [v[rows] for v in full["views"]], "index": full["index"][rows]}
    steps = [_step(m, shard, i) for i in (0, 1, 2)]
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    labels = [m._kmeans(x, 4)]
    m.cfg.method.kmeans_backend = "sklearn"
    labels.append(m._kmeans(x, 4))
    return steps, labels, _pass(rank, world, views, index)


@pytest.fixture(scope="module", params=BACKENDS)
def two_ranks(request):
    """One 2-rank gloo run serves both tests (spawning ranks is the slow part)."""
    g = torch.Generator().manual_seed(2)
    views = [torch.randn(16, 3, 8, 8, generator=g) for _ in range(2)]
    full = batch(12, seed=1, dtype=torch.float64)
    return full, views, run_world(_on_rank, 2, full, views, torch.arange(16), backend=request.param)


def test_two_ranks_equal_one_process_in_losses_and_parameter_gradients_in_every_stage(two_ranks):
    full, _, results = two_ranks
    ref = make(mask_ratio=0.0).double()
    ref.pseudo, _ = PSEUDO.clone(), ref.mapping.copy_(MAPPING)
    for stage_index in (0, 1, 2):
        want_losses, want_grads = _step(ref, full, stage_index)
        (l0, g0), (l1, g1) = results[0][0][stage_index], results[1][0][stage_index]
        for k, v in want_losses.items():
            if k == "loss/pisd":   # a per-rank mean of a per-sample loss: the engine's data-parallel mean is global
                assert (l0[k] + l1[k]) / 2 == pytest.approx(v, abs=1e-10)
            else:                  # gathered losses: the global value on every rank
                assert l0[k] == pytest.approx(v, abs=1e-10) and l1[k] == pytest.approx(v, abs=1e-10), k
        assert set(g0) == set(g1) == set(want_grads)
        for name, grad in want_grads.items():
            dp_mean = (g0[name] + g1[name]) / 2
            assert torch.allclose(dp_mean, grad, atol=1e-10, rtol=1e-9), (stage_index, name)
    # k-means over row shards (torch) and on rank 0 (sklearn): the same labels on every rank and as one process
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    want = [ref._kmeans(x, 4)]
    ref.cfg.method.kmeans_backend = "sklearn"
    want.append(ref._kmeans(x, 4))
    for backend in (0, 1):
        assert torch.equal(results[0][1][backend], want[backend]) and torch.equal(results[1][1][backend], want[backend])


def test_pseudo_label_pass_gathers_every_sample_in_index_order_on_every_rank(two_ranks):
    _, views, results = two_ranks
    index = torch.arange(16)
    ref = _pass(0, 1, views, index)
    assert torch.equal(ref["index"], index)
    for _, _, res in results:
        assert torch.equal(res["index"], index)
        for k in ("z_a", "z_b", "c_a", "c_b"):
            assert torch.allclose(res[k], ref[k], atol=1e-6), k
