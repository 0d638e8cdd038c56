"""R1: a resumed run is the run its checkpoints hold: a changed identity is refused before anything is written;
an accepted change is recorded, and config.yaml is never overwritten."""
import json
import os
import shutil

import pytest
import yaml
from toy_runs import ROOT, SHORT, run_toy, train_losses, tree_hashes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A toy run stopped by engine.max_steps mid-epoch, with a checkpoint to resume."""
    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    run_toy(run_dir, *SHORT, "engine.max_steps=20", "engine.log_every=5")
    return run_dir


def _copy(stopped, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(stopped, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


@pytest.mark.parametrize("overrides,rows", [
    (["data.batch_size=64"], ["data.batch_size: 32 → 64"]),
    (["optim.lr=0.5", "seed=4"], ["optim.lr: 0.05 → 0.5", "seed: 3 → 4"]),
    (["method.hidden=48"], ["method.hidden: 32 → 48"]),
])
def test_a_changed_identity_is_refused_before_anything_is_written(stopped, tmp_path, overrides, rows):
    run_dir = _copy(stopped, tmp_path)
    before = tree_hashes(run_dir)
    res = run_toy(run_dir, *SHORT, *overrides, ok=False)
    assert res.returncode == 2, res.stderr[-2000:]
    err = res.stderr
    assert err.startswith("error: ") and "Traceback" not in err and "size mismatch" not in err
    for row in rows:
        assert row in err
    assert "ckpt.allow_changed=[" in err
    after = tree_hashes(run_dir)
    after.pop(".lock", None)
    assert after == before           # config.yaml, metrics.jsonl, checkpoints: untouched


def test_an_accepted_change_is_recorded_and_config_yaml_kept(stopped, tmp_path):
    run_dir = _copy(stopped, tmp_path)
    original = open(run_dir / "config.yaml").read()
    res = run_toy(run_dir, *SHORT, "optim.lr=0.02", "ckpt.allow_changed=[optim.lr]", "engine.log_every=5")
    assert "resumed from" in res.stdout
    assert open(run_dir / "config.yaml").read() == original
    assert yaml.safe_load(open(run_dir / "config.resume-1.yaml"))["optim"]["lr"] == 0.02
    rec = [json.loads(x) for x in open(run_dir / "metrics.jsonl") if '"resume_config"' in x]
    assert len(rec) == 1 and rec[0]["step"] == 20
    assert rec[0]["changed"] == {"optim.lr": {"saved": 0.05, "given": 0.02}}
    assert train_losses(run_dir)[-1][0] > 20


def test_fields_that_may_change_resume_without_a_record(stopped, tmp_path):
    run_dir = _copy(stopped, tmp_path)
    original = open(run_dir / "config.yaml").read()
    res = run_toy(run_dir, *SHORT, "engine.max_steps=25", "engine.log_every=1", "ckpt.keep_last=1")
    assert "resumed from" in res.stdout and "resume_config" not in open(run_dir / "metrics.jsonl").read()
    assert open(run_dir / "config.yaml").read() == original
    assert not list(run_dir.glob("config.resume-*.yaml"))
    assert train_losses(run_dir)[-1][0] == 25


def test_the_batch_is_compared_as_the_global_batch(tmp_path):
    import sys
    sys.path.insert(0, os.path.join(ROOT, "tests", "runtime"))
    from toy_recipe import config

    from dist_cluster.config import ConfigError, to_dict
    from dist_cluster.config.identity import check_resume
    saved = config()
    saved.data.batch_size = 16
    yaml.safe_dump(to_dict(saved), open(tmp_path / "config.yaml", "w"), sort_keys=False)
    given = config()
    given.data.batch_size = 32
    given.method.wait_for_file = "go"                     # a field marked may_change
    assert check_resume(given, str(tmp_path), world=1, saved_world=2) == {}
    with pytest.raises(ConfigError, match="data.batch_size: 16 → 32"):
        check_resume(given, str(tmp_path), world=2, saved_world=2)
