"""Host syncs in a training step: HostSyncCounter itself, and one step (forward through total_loss, backward)
of every method family, which must not read device values on the host more than twice (on CPU the count is
the proxy of what CUDA would sync on)."""
import pytest
import torch

from dist_cluster.engine.syncs import HostSyncCounter
from dist_cluster.methods.base import total_loss

torch.set_num_threads(1)
MAX_SYNCS = 2


def counted(fn):
    with HostSyncCounter() as c:
        fn()
    return c


def test_counter_counts_reads_and_data_dependent_shapes_but_not_arithmetic():
    x = torch.randn(6, 6, requires_grad=True)
    spd = x.detach() @ x.detach().T + torch.eye(6)
    mask = x.detach()[0] > 0
    assert counted(lambda: ((x @ x.T).relu().sum() * 2).backward()).total == 0
    assert counted(lambda: torch.softmax(x, 1).argmax(1).eq(0).float().mean()).total == 0
    c = counted(lambda: x.sum().item())
    assert c.total == 1 and c.counts == {"_local_scalar_dense": 1}
    assert counted(lambda: float(x.detach().sum())).total == 1
    assert counted(lambda: 1 if (x > 0).any() else 0).total == 1
    assert counted(lambda: torch.linalg.cholesky(spd)).total == 1
    assert counted(lambda: torch.linalg.cholesky_ex(spd)).total == 0
    for op in (lambda: torch.bincount(mask.long(), minlength=2), lambda: mask.nonzero(), lambda: x[0][mask],
               lambda: torch.unique(mask), lambda: x[0].masked_select(mask),
               lambda: torch.arange(3).repeat_interleave(torch.tensor([1, 2, 3]))):
        assert counted(op).total == 1
    assert counted(lambda: torch.nonzero_static(mask, size=6)).total == 0
    assert counted(lambda: torch.arange(3).repeat_interleave(2)).total == 0
    assert counted(lambda: torch.zeros(3).scatter_add_(0, mask.long(), torch.ones(6))).total == 0


def test_counter_leaves_out_host_tensors_when_asked_and_optimizer_bookkeeping():
    x = torch.randn(4, requires_grad=True)
    assert counted(lambda: x.sum().item()).total == 1
    with HostSyncCounter(cpu=False) as c:   # a GPU run: host tensors' values cost no wait
        x.sum().item()
    assert c.total == 0
    opt = torch.optim.AdamW([x], lr=0.1)
    x.sum().backward()
    assert counted(opt.step).total == 0     # its step counts live on the host on every device


# ---- one training step of each family ------------------------------------------------------------------------
def step_syncs(method, batch, stage):
    method.train()
    with HostSyncCounter() as c:
        total_loss(method(batch, stage), stage).backward()
    print(f"{type(method).__name__} {stage.name}: {c.total} host syncs {dict(c.counts)}")   # shown with -s
    return c


def cgmcr2(**opts):
    from dist_cluster.config import ExperimentConfig
    from dist_cluster.methods.cgmcr2.config import CgMCR2Config
    from dist_cluster.methods.cgmcr2.method import CgMCR2
    torch.manual_seed(0)
    m = CgMCR2Config(in_dim=12, hidden=32, feature_dim=8, k=3, s=5, **opts)
    return CgMCR2(ExperimentConfig(method=m))


@pytest.mark.parametrize("opts", [{}, {"detach_affinity": False, "symmetrize": True},
                                  {"affinity": "code", "symmetrize": True}, {"affinity": "gaussian", "post": "ds"}])
def test_cgmcr2_step(opts):
    method = cgmcr2(**opts)
    x = torch.randn(24, 12, generator=torch.Generator().manual_seed(0))
    for stage in method.stages():
        c = step_syncs(method, {"feature": x}, stage)
        assert c.total <= MAX_SYNCS, (stage.name, dict(c.counts))


def test_unic_step(tmp_path):
    from unic.unic_helpers import digits_config, make_method
    method, _ = make_method(digits_config(str(tmp_path / "data"), str(tmp_path / "run"), head_hidden=32))
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.randn(16, method.feature_dim, generator=g) for k in ("feature", "pos_feature", "neg_feature")}
    c = step_syncs(method, batch, method.stages()[0])
    assert c.total <= MAX_SYNCS, dict(c.counts)


def pici(scope):
    from dist_cluster.config import ExperimentConfig
    from dist_cluster.methods.pici.method import PICI

    from common.pici import tiny_pici
    cfg = ExperimentConfig(name="t", method=tiny_pici(4), seed=3)
    cfg.data.image_size, cfg.data.in_chans = 8, 3
    cfg.method.match_scope = scope
    torch.manual_seed(0)
    method = PICI(cfg)
    method.pseudo = torch.stack([torch.arange(12) % 4, (torch.arange(12) + 1) % 4])
    g = torch.Generator().manual_seed(0)
    return method, {"views": [torch.randn(12, 3, 8, 8, generator=g) for _ in range(2)],
                    "index": torch.randperm(12, generator=g), "label": torch.zeros(12, dtype=torch.long)}


@pytest.mark.parametrize("scope", ["epoch", "batch"])
def test_pici_steps(scope):
    method, batch = pici(scope)
    for stage in method.stages():
        if scope == "batch" and stage.name != "boost":
            continue
        c = step_syncs(method, batch, stage)   # batch scope: on a GPU also a copy of the labels to the host and
                                               # of the matching back, per view (the Hungarian runs on the host)
        assert c.total <= MAX_SYNCS, (stage.name, dict(c.counts))


def test_fec_step(tmp_path):
    from fec.fec_tiny_data import tiny_overrides, write_image_folder

    from dist_cluster.distributed import resolve
    from dist_cluster.engine.context import RunContext
    from dist_cluster.launch import build_config, build_method, load_recipe
    images = write_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    cfg = build_config(load_recipe("fec_small"), tiny_overrides(images, str(tmp_path / "data"), str(tmp_path / "run"))
                       + ["method.num_classes=3"])
    torch.manual_seed(cfg.seed)
    method = build_method(cfg)
    ctx = RunContext(cfg=cfg, env=resolve({}), run_dir=str(tmp_path / "run"), device=torch.device("cpu"))
    batch = next(iter(method.build_loaders(ctx).epoch(0)))
    batch.pop("_skipped", None)
    c = step_syncs(method, batch, method.stages()[0])
    assert c.total <= MAX_SYNCS, dict(c.counts)


def test_engine_logs_the_most_syncs_of_a_step(tmp_path):
    import json
    import os

    from toy_runs import SHORT, run_toy
    run_toy(tmp_path, *SHORT, "engine.count_syncs=true", "engine.max_steps=7", "engine.final_eval=false")
    rows = [json.loads(x) for x in open(os.path.join(tmp_path, "metrics.jsonl"))]
    train = [r for r in rows if r["kind"] == "train"]
    assert train and all(r["diag/host_syncs_per_step"] == 0 for r in train)   # the engine's own step: none
