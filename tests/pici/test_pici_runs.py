"""PICI through its recipes and the real engine: a resumed run continues in the stage it was stopped in and
ends as an uninterrupted run would; 2 processes under torchrun with ZeRO-2; the paper recipe on substitute
ImageFolder shards; SPEC P8's Fashion-MNIST configuration."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from inprocess import run_recipe_in_process

from dist_cluster import checkpoint as ckpt
from dist_cluster.distributed.spawn import free_port
from dist_cluster.launch import load_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
# digits, 480 images, 10 steps per epoch: pretrain epoch 0, train epochs 1-2, boost epoch 3 (steps 31-40)
SMALL = ["data.train_samples=480", "data.batch_size=48", "method.pretrain_epochs=1", "method.train_epochs=2",
         "method.boost_epochs=1", "engine.eval_every=0", "engine.log_every=1", "method.tsne_samples=0",
         "method.recon_images=4", "ckpt.save_at_epoch_end=true", "ckpt.every_steps=0"]


def run(recipe, run_dir, *overrides, nproc=1):
    launcher = [sys.executable] if nproc == 1 else [
        os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", str(nproc),
        "--master_port", str(free_port())]
    args = [f"run_dir={run_dir}", *overrides]
    res = run_recipe_in_process(recipe, args, cwd=ROOT) if nproc == 1 else subprocess.run(
        launcher + [os.path.join(ROOT, "recipes", f"{recipe}.py"), *args], env=ENV, capture_output=True, text=True,
        timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res.stdout


def records(run_dir, kind):
    return [r for r in map(json.loads, open(os.path.join(run_dir, "metrics.jsonl"))) if r["kind"] == kind]


def final_module(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    return torch.load(os.path.join(d, ckpt.latest(d), "mp_rank_00_model_states.pt"), weights_only=False)["module"]


@pytest.mark.slow
def test_runs_stopped_in_stage_two_and_in_boost_resume_there_and_end_as_uninterrupted(tmp_path):
    data = f"data.root={tmp_path / 'data'}"
    run("pici_digits", tmp_path / "ref", *SMALL, data)
    victim = tmp_path / "victim"
    run("pici_digits", victim, *SMALL, data, "engine.max_steps=15")              # stops in "train", epoch 1
    out = run("pici_digits", victim, *SMALL, data, "engine.max_steps=35")        # resumes there, stops in boost
    assert "resumed from" in out and "at step 15 (epoch 1, batch 5)" in out
    train = records(victim, "train")
    assert [r["stage"] for r in train if 15 < r["step"] <= 30] == ["train"] * 15
    assert [r["stage"] for r in train if r["step"] > 30] == ["boost"] * 5
    out = run("pici_digits", victim, *SMALL, data)                                # resumes inside boost
    assert "at step 35 (epoch 3, batch 5)" in out
    # k-means ran once (at the boost start), not again after the resume inside the boost stage
    assert len([r for r in records(victim, "boost") if "cli/kmeans_nmi_views" in r]) == 1
    ref, got = final_module(tmp_path / "ref"), final_module(victim)
    assert (got["pseudo"] >= 0).all() and torch.equal(ref["pseudo"], got["pseudo"])
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    ref_loss = {r["step"]: r["loss"] for r in records(tmp_path / "ref", "train")}
    assert all(ref_loss[r["step"]] == r["loss"] for r in train)


@pytest.mark.slow
def test_two_processes_with_zero2_train_every_stage_and_write_figures(tmp_path):
    run_dir = tmp_path / "w2"
    run("pici_digits", run_dir, *SMALL, f"data.root={tmp_path / 'data'}", "data.batch_size=24",
        "engine.zero_stage=2", nproc=2)
    summary = json.load(open(run_dir / "summary.json"))
    assert summary["world_size"] == 2 and summary["global_step"] == 40
    assert {"acc", "nmi", "ari", "clusters_nonempty"} <= set(summary["metrics"])
    assert {r["stage"] for r in records(run_dir, "train")} == {"pretrain", "train", "boost"}
    names = {os.path.basename(p) for p in summary["figures"]}
    assert {"pici_reconstructions.png", "pici_confusion.png", "pici_curves.png"} <= names
    assert all(os.path.getsize(p) > 1000 for p in summary["figures"])


def _imagefolder(root, classes=2, per_class=2, size=80):
    from PIL import Image
    g = np.random.default_rng(0)
    for c in range(classes):
        os.makedirs(root / f"class{c}", exist_ok=True)
        for i in range(per_class):
            img = (g.random((size, size, 3)) * 60 + 100 * c).astype(np.uint8)
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")


@pytest.mark.slow
def test_paper_recipe_runs_every_stage_on_substitute_imagefolder_shards(tmp_path):
    cfg = load_recipe("pici")()
    m = cfg.method
    assert (m.embed_dim, m.depth, m.num_heads, m.decoder_embed_dim, m.decoder_depth, m.decoder_num_heads) == \
        (384, 6, 12, 512, 8, 16)
    assert (cfg.data.image_size, cfg.data.batch_size, m.mask_ratio, m.tau_instance, m.tau_cluster) == \
        (224, 96, 0.5, 0.5, 1.0)
    assert (m.pretrain_epochs, m.train_epochs, m.boost_epochs) == (200, 800, 50)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.sched.name, cfg.seed) == \
        ("adam", 1e-4, 0.0, "constant", 42)
    _imagefolder(tmp_path / "photos")
    run_dir = tmp_path / "run"
    run("pici", run_dir, f"data.source={tmp_path / 'photos'}", f"data.root={tmp_path / 'shards'}",
        "data.image_size=64", "data.batch_size=2", "data.eval_batch_size=4", "data.num_workers=0",
        "method.num_clusters=2", "method.pretrain_epochs=1", "method.train_epochs=1", "method.boost_epochs=1",
        "engine.eval_every=0", "engine.log_every=1", "method.recon_images=2")
    summary = json.load(open(run_dir / "summary.json"))
    assert summary["global_step"] == 6 and summary["metrics"]["clusters_nonempty"] >= 1
    assert [r["stage"] for r in records(run_dir, "train")] == ["pretrain"] * 2 + ["train"] * 2 + ["boost"] * 2


def test_fmnist_recipe_is_spec_p8s_tiny_configuration():
    cfg = load_recipe("pici_fmnist")()
    m, d = cfg.method, cfg.data
    assert (d.name, d.image_size, d.in_chans, d.train_samples, d.batch_size) == ("fmnist", 28, 3, 10_000, 96)
    assert (m.patch_size, m.embed_dim, m.depth, m.num_heads) == (4, 64, 2, 4)
    assert (m.decoder_embed_dim, m.decoder_depth, m.decoder_num_heads) == (64, 1, 4)
    assert (m.head_hidden, m.instance_dim, m.num_clusters) == (64, 32, 10)
    assert (m.pretrain_epochs, m.train_epochs, m.boost_epochs) == (2, 6, 2)
    assert (cfg.optim.name, cfg.optim.lr) == ("adam", 1e-3)
    digits = load_recipe("pici_digits")()
    assert digits.data.image_size == 16 and digits.method.patch_size == 4      # L = 16
