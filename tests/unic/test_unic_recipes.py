"""UNIC's paper-setting recipes, built as a user runs them and stepped on tiny substitute shards with a
randomly initialised small ViT (the real DINO weights and data sets are not on this machine)."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from unic_images import tiny_overrides, write_image_folder

from dist_cluster.distributed import resolve
from dist_cluster.engine.context import RunContext
from dist_cluster.engine.setup import build_optimizer
from dist_cluster.launch import build_config, build_method, load_recipe
from dist_cluster.methods.base import total_loss

from common.unic import PAPER

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBSTITUTE_N = 64     # images in the substitute folder
RECIPES = ["unic_imagenet50", "unic_imagenet100", "unic_imagenet200", "unic_stl10", "unic_gcd_cifar10",
           "unic_gcd_imagenet100", "unic_gcd_cub200"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("unic_substitute"))


def make(images, tmp_path, recipe, *extra):
    cfg = build_config(load_recipe(recipe), tiny_overrides(images, str(tmp_path / "data"), str(tmp_path / "run"))
                       + list(extra))
    torch.manual_seed(cfg.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # "randomly initialised": no weights on this machine
        method = build_method(cfg)
    ctx = RunContext(cfg=cfg, env=resolve({}), run_dir=str(tmp_path / "run"), device=torch.device("cpu"))
    return cfg, method, ctx


def test_paper_settings_are_the_papers():
    for recipe in RECIPES:
        cfg = load_recipe(recipe)()
        m, key = cfg.method, recipe[len("unic_"):]
        for k, v in PAPER[key].items():
            assert getattr(m, k) == v, (recipe, k)
        assert (m.input, m.backbone, m.train_blocks, m.train_final_norm, m.head, m.head_hidden, m.head_act) == \
            ("images", "vit_base_patch16_224.dino", 1, True, "mlp", 2048, "gelu")
        assert (m.lambda_pos, m.lambda_neg, m.lambda_ent, m.epochs) == (1.0, 1.0, 3.0, 100)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.sched.name) == ("adam", 1e-4, 0.0, "cosine")
        assert cfg.data.image_size == 224 and cfg.data.scale == (0.2, 1.0) and m.train_transform == "scan"
        assert cfg.data.batch_size == (512 if key == "imagenet200" else 128)
        assert m.mode == ("gcd" if key.startswith("gcd_") else "cluster")


def test_missing_weights_file_is_an_error_not_a_download(tmp_path):
    cfg = build_config(load_recipe("unic_imagenet50"), [f"method.pretrained_path={tmp_path}/dino.pth",
                                                        "data.train=unused.json"])
    with pytest.raises(FileNotFoundError, match="never"):
        build_method(cfg)


def _step(images, tmp_path, recipe):
    k = load_recipe(recipe)().method.num_clusters       # the paper's K (checked above) can exceed the 64 images,
    extra = [f"method.num_clusters={SUBSTITUTE_N}"] if k > SUBSTITUTE_N else []   # which is refused at start-up
    cfg, method, ctx = make(images, tmp_path, recipe, *extra)
    stage = method.stages()[0]
    method.on_stage_start(stage, ctx, resumed=False)
    assert os.path.exists(os.path.join(ctx.run_dir, "mining"))
    loader = method.build_loaders(ctx)
    optimizer = build_optimizer(method, cfg.optim)
    assert {g["group_name"] for g in optimizer.param_groups} == {"head", "backbone"}
    trainable = {n for n, p in method.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("head.", "backbone.model.blocks.1.", "backbone.model.norm.",
                                           "backbone.model.fc_norm.")) for n in trainable)
    before = {n: p.detach().clone() for n, p in method.named_parameters()}
    method.train()
    for _, batch in zip(range(2), loader.epoch(0)):
        assert batch["image"].shape == batch["pos_image"].shape == batch["neg_image"].shape == (8, 3, 32, 32)
        loss = total_loss(method(batch, stage), stage)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    moved = {n for n, p in method.named_parameters() if not torch.equal(p, before[n])}
    assert moved == trainable
    metrics = method.evaluate(ctx)
    assert 0 <= metrics["acc"] <= 1 and ("old" in metrics) == (cfg.method.mode == "gcd")
    return cfg, method


def test_imagenet50_recipe_mines_and_steps_on_substitute_shards(images, tmp_path):
    cfg, method = _step(images, tmp_path, "unic_imagenet50")
    assert method.head.fc2.out_features == 50 and method.mined.n == 64


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES[1:])
def test_other_paper_recipes_mine_and_step(images, tmp_path, recipe):
    _step(images, tmp_path, recipe)


@pytest.mark.slow
def test_gcd_recipe_runs_under_the_launcher_and_writes_figures(images, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "recipes", "unic_gcd_cifar10.py"),
           *tiny_overrides(images, str(tmp_path / "data"), str(run_dir)), "method.epochs=2", "engine.max_steps=0"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    import json
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"all", "old", "new", "v1_all"} <= set(summary["metrics"]) and summary["epochs_done"] == 2
    assert sorted(os.path.basename(p) for p in summary["figures"]) == ["confusion.png", "neighbour_purity.png"]
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(x["kind"] == "mining" and "mining/positive_accuracy" in x for x in lines)
    assert np.isfinite([x["loss"] for x in lines if x["kind"] == "train"]).all()
