"""D3-D8, D10: bad input is refused before work starts with the file, key or index; skips are counted."""
import json
import logging
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from inprocess import run_recipe_in_process
from toy_runs import ENV, ROOT, SHORT, run_toy, tree_hashes

from dist_cluster.data import skips
from dist_cluster.data.dataset import load_feature_arrays
from dist_cluster.data.manifest import Manifest
from dist_cluster.data.sources import FeatureSource
from dist_cluster.data.writer import write_shards


def recipe(name, *overrides, cwd=ROOT):
    return run_recipe_in_process(name, list(overrides), cwd=cwd)


def feature_shards(out_dir, n=40, per_shard=10, values=None):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3) if values is None else values
    return write_shards(FeatureSource(x, np.arange(n) % 4, list("abcd"), {}), str(out_dir), "train",
                        samples_per_shard=per_shard, progress=False)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits pixel shards, written once for the module (data.root of the runs below)."""
    root = tmp_path_factory.mktemp("data")
    from dist_cluster.data import DataConfig, prepare
    paths = prepare(DataConfig(name="digits_pixels", root=str(root)))
    return root, paths


def test_damaged_feature_shard_is_counted_in_data_skipped(digits, tmp_path):
    """D3: a garbage-filled member is skipped and counted in metrics.jsonl and summary.json, not dropped silently."""
    root, paths = digits
    import shutil
    copy = tmp_path / "shards"
    shutil.copytree(os.path.dirname(paths["train"]), copy)
    m = Manifest.load(str(copy / os.path.basename(paths["train"])))
    with tarfile.open(m.url(0)) as t:
        member = [x for x in t.getmembers() if x.name.endswith(".npy")][3]
    with open(m.url(0), "r+b") as f:             # garbage over one sample's bytes
        f.seek(member.offset_data)
        f.write(b"\xff" * member.size)
    run_dir = tmp_path / "run"
    res = recipe("cgmcr2_digits", f"run_dir={run_dir}", f"data.train={m.path}", f"data.eval={m.path}",
                 f"data.root={root}", "engine.max_steps=2", "method.baselines=[]", "data.batch_size=256")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(x) for x in open(run_dir / "metrics.jsonl")]
    assert sum(r.get("data/skipped", 0) for r in rows if r["kind"] == "data") >= 1
    assert json.load(open(run_dir / "summary.json"))["data_skipped"] >= 1


def test_non_finite_features_are_refused_at_load_naming_shard_and_sample(tmp_path):
    """D4 (load time): the error names the shard, the sample and its global index."""
    x = np.ones((30, 3), dtype=np.float32)
    x[17, 1] = np.nan
    path = feature_shards(tmp_path, n=30, values=x)
    with pytest.raises(ValueError, match=r"train-000001\.tar: feature sample 7 \(global index 17\) holds NaN"):
        load_feature_arrays(path)


def test_more_clusters_than_samples_is_refused_at_start_up(digits, tmp_path):
    """D5: CgMCR² and PICI refuse k > N before the first step, as a one-line error."""
    root, _ = digits
    res = recipe("cgmcr2_digits", f"run_dir={tmp_path / 'c'}", f"data.root={root}", "method.k=2000")
    assert res.returncode == 2
    assert "method.k=2000 clusters, but the training data has only 1797 samples" in res.stderr
    assert not (tmp_path / "c").exists()          # a refused start writes nothing (R9)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("mine")
    res = recipe("pici_digits", f"run_dir={tmp_path / 'p'}", f"data.root={root}", "method.num_clusters=2000")
    assert res.returncode == 2 and "method.num_clusters=2000 clusters" in res.stderr
    assert sorted(os.listdir(tmp_path / "p")) in (["notes.txt"], [".lock", "notes.txt"])   # as it was found


def test_empty_and_broken_manifests_are_named(tmp_path):
    """D6/D8: a 0-byte manifest, invalid JSON, a manifest with no samples."""
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(ValueError, match=f"manifest {empty} is empty"):
        Manifest.load(str(empty))
    broken = tmp_path / "broken.json"
    broken.write_text("{\"format\": ")
    with pytest.raises(ValueError, match=f"manifest {broken} is not valid JSON"):
        Manifest.load(str(broken))
    none = tmp_path / "none.json"
    none.write_text(json.dumps({"format": "dist_cluster.shards/1", "shards": [], "total": 0}))
    with pytest.raises(ValueError, match=f"manifest {none} lists no samples"):
        Manifest.load(str(none))


def test_bad_choices_are_refused_before_config_yaml_is_written(tmp_path):
    """D7: Literal fields checked by the override parser, in the recipe run and in slurm/submit.py."""
    res = run_toy(tmp_path, "engine.zero_stage=7", ok=False)
    assert res.returncode == 2 and "expected one of [0, 1, 2, 3]" in res.stderr
    assert not (tmp_path / "config.yaml").exists()
    res = recipe("unic_fmnist", f"run_dir={tmp_path}", "method.mode=foo")
    assert res.returncode == 2 and "bad value 'foo' for 'method.mode'" in res.stderr
    assert not (tmp_path / "config.yaml").exists()
    res = subprocess.run([sys.executable, os.path.join(ROOT, "slurm", "submit.py"), "recipe=unic_fmnist",
                          "method.mode=foo", "--dry-run"], env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "bad value 'foo' for 'method.mode'" in res.stderr


def test_unwritable_checkpoints_folder_is_said_in_those_words(tmp_path):
    """D8: the checkpoints folder cannot be created (a file is in the way)."""
    (tmp_path / "checkpoints").write_text("not a folder")
    res = run_toy(tmp_path, *SHORT, ok=False)
    assert res.returncode == 2
    assert f"the checkpoints folder {tmp_path}/checkpoints cannot be written" in res.stderr
    assert "Traceback" not in res.stderr


def test_many_bad_samples_give_a_few_warnings_and_a_count(tmp_path, caplog):
    """D8: 30 unreadable samples → WARN_FIRST warnings, every one counted."""
    path = feature_shards(tmp_path, n=40, per_shard=40)
    m = Manifest.load(path)
    with tarfile.open(m.url(0)) as t:
        members = [x for x in t.getmembers() if x.name.endswith(".npy")][:30]
    with open(m.url(0), "r+b") as f:
        for mem in members:
            f.seek(mem.offset_data)
            f.write(b"\x00" * mem.size)
    skips.reset()          # the warning budget is per process; earlier tests in this one may have used it
    with caplog.at_level(logging.WARNING, logger="dist_cluster.data"):
        x, _, _ = load_feature_arrays(path)
    assert len(x) == 10 and skips.take() == 30
    assert len([r for r in caplog.records if "skipping" in r.getMessage()]) == skips.WARN_FIRST


def test_deepspeeds_zero_to_fp32_works_without_a_tag(tmp_path):
    """D10: the `latest` pointer names the newest complete checkpoint, so DeepSpeed's own tool needs no --tag."""
    run_toy(tmp_path, *SHORT, "engine.zero_stage=3", "engine.max_steps=6", "ckpt.every_steps=3")
    d = tmp_path / "checkpoints"
    assert (d / "latest").read_text() == "step000000006"
    before = tree_hashes(d)
    res = subprocess.run([sys.executable, str(d / "zero_to_fp32.py"), str(d), str(tmp_path / "fp32")], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert os.listdir(tmp_path / "fp32")
    assert tree_hashes(d) == before


def test_streamed_evaluation_with_fewer_shards_than_ranks_covers_every_sample_once(tmp_path):
    """D9: one streamed shard, two ranks: no rank is left with an empty shard list and an error."""
    from dist_cluster.data import build_eval_loader, resolve_manifest
    from dist_cluster.data.config import DataConfig
    path = feature_shards(tmp_path, n=25, per_shard=25)
    shard = Manifest.load(path).url(0)
    m = resolve_manifest(f"pipe:cat {shard}", num_samples=25)
    assert len(m.shards) == 1
    cfg = DataConfig(name="x", batch_size=4, eval_batch_size=4)
    loaders = [build_eval_loader(cfg, m, rank=r, world_size=2) for r in range(2)]
    batches = [list(loader) for loader in loaders]
    assert len(batches[0]) == len(batches[1]) == len(loaders[0])
    seen = [i for bs in batches for b in bs for i in b["index"].tolist()]
    assert sorted(set(seen)) == list(range(25))
    firsts = [set(i for b in bs for i in b["index"].tolist()) for bs in batches]
    assert not firsts[0] & firsts[1]                 # each sample on one rank (repeats are that rank's own)


def test_non_finite_features_are_refused_when_shards_are_written(tmp_path):
    """D4 (write time): make_shards.py names the row and column, and writes nothing."""
    x = np.ones((40, 3), dtype=np.float32)
    x[11, 2] = np.inf
    np.save(tmp_path / "bad.npy", x)
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_shards.py"), "features", "--path",
                          str(tmp_path / "bad.npy"), "--out", str(tmp_path / "out")], env=ENV, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0 and "row 11" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_feature_width_other_than_the_recipes_is_refused_before_the_first_step(tmp_path):
    """A 48-d feature set under a recipe built for 64-d features: a clear message, not a shape error."""
    x = np.random.default_rng(0).normal(size=(300, 48)).astype(np.float32)
    path = feature_shards(tmp_path / "shards", n=300, per_shard=100, values=x)
    res = recipe("cgmcr2_digits", f"run_dir={tmp_path / 'run'}", f"data.train={path}", f"data.eval={path}")
    assert res.returncode == 2
    assert "method.in_dim=64, but the training features are 48-d" in res.stderr and "Traceback" not in res.stderr
