"""The classification method and the three paper recipes, stepped in-process on tiny substitute shards."""
import numpy as np
import pytest
import torch
from fec_tiny_data import tiny_overrides, write_image_folder

from dist_cluster.distributed import resolve
from dist_cluster.engine.context import RunContext
from dist_cluster.engine.setup import build_optimizer
from dist_cluster.launch import build_config, build_method, load_recipe
from dist_cluster.methods.base import total_loss

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imagenet_substitute"))


def make(images, tmp_path, recipe="fec_small", *extra):
    cfg = build_config(load_recipe(recipe), tiny_overrides(images, str(tmp_path / "data"), str(tmp_path / "run"))
                       + list(extra))
    torch.manual_seed(cfg.seed)
    method = build_method(cfg)
    ctx = RunContext(cfg=cfg, env=resolve({}), run_dir=str(tmp_path / "run"), device=torch.device("cpu"))
    return cfg, method, ctx


@pytest.mark.parametrize("recipe,numel,size", [
    ("fec_small", 5_727_528, 64),
    pytest.param("fec_base", 15_086_848, 32, marks=pytest.mark.slow),
    pytest.param("fec_large", 29_720_344, 32, marks=pytest.mark.slow)])
def test_recipe_is_the_paper_protocol_and_takes_two_steps(images, tmp_path, recipe, numel, size):
    cfg, method, ctx = make(images, tmp_path, recipe, f"data.image_size={size}")
    m, o, s, d = cfg.method, cfg.optim, cfg.sched, cfg.data
    assert (o.name, o.lr, o.weight_decay, o.betas) == ("adamw", 1e-3, 0.05, (0.9, 0.999))
    assert (s.name, s.warmup_epochs, s.warmup_lr, s.min_lr, s.cooldown_epochs, m.epochs) == \
        ("cosine", 5, 1e-6, 1e-6, 10, 310)
    assert (m.mixup, m.cutmix, m.mixup_prob, m.mixup_switch_prob, m.smoothing, m.ema, m.ema_decay) == \
        (0.8, 1.0, 1.0, 0.5, 0.1, True, 0.9998)
    assert (d.auto_augment, d.re_prob, d.crop_pct, d.interpolation, cfg.seed) == \
        ("rand-m9-mstd0.5-inc1", 0.25, 0.9, "bicubic", 42)
    assert sum(p.numel() for p in method.model.parameters()) == numel          # 1000-way head, as on ImageNet
    loader = method.build_loaders(ctx)
    assert loader.batches_per_epoch() == 6                                      # 24 images / batch 4
    optimizer = build_optimizer(method, cfg.optim)                              # the engine's param groups
    assert not any(p.requires_grad for p in method.ema.parameters())            # the EMA copy never trains
    stage = method.stages()[0]
    method.train()
    first = None
    for step, batch in zip(range(2), loader.epoch(0)):
        assert batch["image"].shape == (4, 3, size, size)
        out = method(batch, stage)
        loss = total_loss(out, stage)
        loss.backward()
        assert torch.isfinite(loss) and 0 < loss.item() < 10 and out["min_alpha"] > 0
        grads = [p.grad for p in method.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        first = first or {n: p.detach().clone() for n, p in method.model.named_parameters()}
        optimizer.step()
        optimizer.zero_grad()
    moved = {n for n, p in method.model.named_parameters() if not torch.equal(p, first[n])}
    assert moved == {n for n, p in method.model.named_parameters() if p.requires_grad}   # all but the pool keys


def test_ema_follows_optimizer_steps(images, tmp_path):
    _, method, ctx = make(images, tmp_path, "fec_small", "method.num_classes=3", "method.ema_decay=0.5")
    w = lambda mod: mod.head.weight.detach().clone()   # noqa: E731
    for step in (1, 2):
        with torch.no_grad():
            method.model.head.weight.add_(1.0)        # stands in for an optimizer step
        before = w(method.ema.module)
        method.on_step_end(step, {"loss": 0.0}, ctx)   # the engine calls it after each optimizer step
        expected = w(method.model) if step == 1 else 0.5 * before + 0.5 * w(method.model)  # timm: decay 0 at step 1
        torch.testing.assert_close(w(method.ema.module), expected)
        assert int(method.ema_step) == step
        method.on_step_end(step, {"loss": 0.0}, ctx)   # the same step again (a replay): no second update
        torch.testing.assert_close(w(method.ema.module), expected)


def test_mixup_is_seeded_by_step_and_leaves_numpy_alone(images, tmp_path):
    _, method, ctx = make(images, tmp_path, "fec_small", "method.num_classes=3")
    batch = next(method.build_loaders(ctx).epoch(0))
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    a = method._mix(batch["image"].clone(), batch["label"], batch["index"])
    b = method._mix(batch["image"].clone(), batch["label"], batch["index"])
    assert np.array_equal(np.random.get_state()[1], state)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], batch["image"])                                # it did mix
    method.on_step_end(7, {"loss": 0.0}, ctx)   # the mix seed follows the steps done
    c = method._mix(batch["image"].clone(), batch["label"], batch["index"])
    assert not torch.equal(a[1], c[1]) or not torch.equal(a[0], c[0])
    torch.testing.assert_close(a[1].sum(1), torch.ones(4))                      # soft targets with smoothing


def test_evaluate_reports_top1_top_k_over_the_eval_split(images, tmp_path):
    _, method, ctx = make(images, tmp_path, "fec_small", "method.num_classes=3")
    method.eval()
    metrics = method.evaluate(ctx)
    assert metrics["eval_samples"] == 12
    assert set(metrics) == {"eval_samples", "top1", "top3", "ema_top1", "ema_top3"}
    assert metrics["top3"] == 1.0 and round(metrics["top1"] * 12, 4) == round(metrics["top1"] * 12)
    # the same number by hand, from the eval loader
    from dist_cluster.data import build_eval_loader
    hits = [int(method.model(b["image"]).argmax(1).eq(b["label"]).sum())
            for b in build_eval_loader(method.cfg.data, method.manifests()["eval"], rank=0, world_size=1,
                                       views="eval")]
    assert metrics["top1"] == pytest.approx(sum(hits) / 12)


def test_config_errors(images, tmp_path):
    from dist_cluster.config import ConfigError
    for size in (48, 0):
        with pytest.raises(ConfigError, match="multiple of 32"):
            make(images, tmp_path, "fec_small", f"data.image_size={size}")
    with pytest.raises(ConfigError, match="zero_stage"):
        make(images, tmp_path, "fec_small", "engine.zero_stage=3")
    _, method, _ = make(images, tmp_path, "fec_small", "method.num_classes=0", "method.ema=false")
    assert method.model.num_classes == 3 and method.ema is None                 # from the manifest


def test_depths_set_the_blocks_per_stage_and_are_checked(images, tmp_path):
    from dist_cluster.config import ConfigError
    _, method, _ = make(images, tmp_path, "fec_small", "method.depths=[1,2,1,1]", "method.num_classes=3")
    assert [len(s.blocks) for s in method.model.stages] == [1, 2, 1, 1]
    assert [len(s.blocks) for s in method.ema.module.stages] == [1, 2, 1, 1]
    for bad in (["method.depths=[1,1,1]"], ["method.depths=[1,0,1,1]"],
                ["method.model=resnet18", "method.depths=[1,1,1,1]"]):
        with pytest.raises(ConfigError, match="method.depths is the number of blocks"):
            make(images, tmp_path, "fec_small", *bad)
    with pytest.raises(ConfigError, match="method.depths"):
        make(images, tmp_path, "fec_small", "method.depths=[1,one,1,1]")
