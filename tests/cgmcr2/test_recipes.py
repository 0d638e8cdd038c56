"""Every CgMCR² recipe builds its paper config and runs a few steps under the real launcher on small
substitute feature shards (CLIP features and CIFAR/ImageNet are not on this machine)."""
import json
import os

import numpy as np
import pytest
from inprocess import run_recipe_in_process

from dist_cluster.data.sources import FeatureSource
from dist_cluster.data.writer import write_shards
from dist_cluster.launch import load_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")

# recipe → (paper k, d, global batch, γ, ε, s) from Table A.3
PAPER = {"cgmcr2_cifar10": (10, 128, 512, 70, 0.5, 10), "cgmcr2_cifar100": (100, 128, 2048, 1400, 0.5, 20),
         "cgmcr2_imagenet": (1000, 256, 3000, 50000, 0.2, 3), "cgmcr2_fmnist": (10, 128, 2048, 50, 0.2, 20)}


def substitute_shards(out, k: int, dim: int, n_train: int, n_eval: int) -> tuple[str, str]:
    g = np.random.default_rng(0)
    centres = g.normal(size=(k, dim)).astype(np.float32)
    paths = []
    for split, n in (("train", n_train), ("eval", n_eval)):
        y = np.arange(n) % k
        x = centres[y] + 0.5 * g.normal(size=(n, dim)).astype(np.float32)
        src = FeatureSource(x, y, [str(c) for c in range(k)], {"name": "substitute"})
        paths.append(write_shards(src, str(out), split, samples_per_shard=max(64, n // 2), progress=False))
    return paths[0], paths[1]


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_has_the_paper_settings(name):
    cfg = load_recipe(name)()
    m = cfg.method
    assert (m.k, m.feature_dim, m.global_batch, m.gamma, m.eps, m.s) == PAPER[name]
    assert m.orth_form == "code" and m.activation == "gumbel" and cfg.optim.name == "adam"
    assert m.hidden == (1024 if name == "cgmcr2_fmnist" else 4096)
    assert m.in_dim == (1280 if name == "cgmcr2_fmnist" else 768)


def _run(recipe: str, overrides: list[str]):
    res = run_recipe_in_process(recipe, overrides, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]


def test_reference_code_variant_runs_under_the_launcher(tmp_path):
    """The reference code's affinity adds a learnable threshold, which the DeepSpeed engine must take."""
    train, evals = substitute_shards(tmp_path / "data", 10, 1280, n_train=128, n_eval=64)
    run_dir = tmp_path / "run"
    _run("cgmcr2_fmnist", [f"data.train={train}", f"data.eval={evals}", f"run_dir={run_dir}", "method.hidden=32",
                           "method.global_batch=32", "method.warmup_epochs=1", "method.finetune_epochs=1",
                           "method.affinity=code", "method.degree=col", "method.detach_affinity=false",
                           "method.eps_is_squared=true", "method.baselines=()", "engine.progress=false"])
    summary = json.load(open(run_dir / "summary.json"))
    assert summary["global_step"] == 8 and 0.0 <= summary["metrics"]["acc"] <= 1.0


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_runs_a_few_steps_on_substitute_shards(tmp_path, name):
    k, d = PAPER[name][:2]
    dim = 1280 if name == "cgmcr2_fmnist" else 768
    n_train = 256 if k < 1000 else 1024              # ImageNet's k = 1000 needs N >= k
    steps = n_train // 64 + 2                        # the warm-up epoch, then 2 fine-tune steps
    train, evals = substitute_shards(tmp_path / "data", k, dim, n_train=n_train,
                                     n_eval=max(128, 2 * k) if k < 1000 else 128)
    run_dir = tmp_path / "run"
    overrides = [f"data.train={train}", f"data.eval={evals}", f"run_dir={run_dir}", "method.hidden=64",
                 "method.global_batch=64", "method.warmup_epochs=1", "method.finetune_epochs=1",
                 f"engine.max_steps={steps}", "method.baselines=()", "engine.progress=false", "engine.log_every=1"]
    _run(name, overrides)
    summary = json.load(open(run_dir / "summary.json"))
    assert summary["global_step"] == steps and 0.0 <= summary["metrics"]["acc"] <= 1.0
    lines = [json.loads(x) for x in open(run_dir / "metrics.jsonl")]
    stages = {x.get("stage") for x in lines if x["kind"] == "train"}
    assert stages == {"warmup", "finetune"}          # the warm-up steps, then Rc over all k clusters
    assert all(np.isfinite(x["loss/Rc"]) for x in lines if x["kind"] == "train" and x["stage"] == "finetune")
    table = json.load(open(run_dir / "results_table.json"))["rows"]
    assert "cgmcr2" in table and ("cgmcr2_sc" in table) == (k < 128)
    assert os.path.exists(run_dir / "figures" / "cluster_sizes.png")


def test_saved_config_is_what_the_user_gave_and_derived_values_are_logged_beside_it(tmp_path):
    """global_batch and a 0 input width are resolved by the method, never written back into config.yaml."""
    import yaml
    train, evals = substitute_shards(tmp_path / "data", 10, 48, n_train=600, n_eval=64)
    run_dir = tmp_path / "run"
    _run("cgmcr2_digits", [f"data.train={train}", f"data.eval={evals}", f"run_dir={run_dir}", "method.in_dim=0",
                           "method.global_batch=300", "method.hidden=32", "engine.max_steps=1", "method.baselines=()"])
    saved = yaml.safe_load(open(run_dir / "config.yaml"))
    assert saved["data"]["batch_size"] == 512 and saved["method"]["in_dim"] == 0   # the recipe's and the user's
    derived = [json.loads(x) for x in open(run_dir / "metrics.jsonl") if '"derived"' in x][0]
    assert derived["batch_size_per_rank"] == 300 and derived["global_batch"] == 300 and derived["in_dim"] == 48
    assert json.load(open(run_dir / "summary.json"))["derived"]["in_dim"] == 48


def test_digits_recipe_saves_at_stage_ends_only(tmp_path):
    """A run that trains in seconds writes one checkpoint per stage (kept: ckpt.keep_last), not one per epoch."""
    from dist_cluster import checkpoint as ckpt
    run_dir = tmp_path / "run"
    _run("cgmcr2_digits", [f"run_dir={run_dir}", f"data.root={tmp_path / 'data'}", "method.warmup_epochs=2",
                           "method.finetune_epochs=2", "method.baselines=()", "ckpt.keep_last=5"])
    assert ckpt.complete_tags(str(run_dir / "checkpoints")) == ["step000000006", "step000000012"]   # 3 steps/epoch
