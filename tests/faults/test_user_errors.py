"""R5: every error a user causes is one `error:` message with exit code 2, no traceback; `--debug` or
DIST_CLUSTER_DEBUG=1 shows the traceback."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from inprocess import cluster_cli_in_process, run_recipe_in_process
from toy_runs import ENV, ROOT, SHORT, toy_cmd

from dist_cluster.data.sources import FeatureSource
from dist_cluster.data.writer import write_shards

pytestmark = pytest.mark.slow
RECIPE = [sys.executable, os.path.join(ROOT, "recipes", "cgmcr2_digits.py")]
CLI = [sys.executable, "-m", "dist_cluster.cluster"]


def _manifests(root):
    (root / "empty.json").write_text("")
    (root / "broken.json").write_text('{"format": ')
    (root / "none.json").write_text(json.dumps({"format": "dist_cluster.shards/1", "shards": [], "total": 0}))
    x = np.ones((40, 64), dtype=np.float32)
    x[17, 1] = np.nan
    nan = write_shards(FeatureSource(x, np.arange(40) % 4, list("abcd"), {}), str(root / "nan"), "train",
                       samples_per_shard=10, progress=False)
    np.save(root / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (root / "a_file").write_text("not a folder")
    return nan


CASES = {   # name: (command from the fixture folder, text the error names)
    "empty manifest": (lambda r, n: RECIPE + [f"data.train={r}/empty.json", f"run_dir={r}/run"],
                       "is empty (0 bytes)"),
    "bad-JSON manifest": (lambda r, n: RECIPE + [f"data.train={r}/broken.json", f"run_dir={r}/run"],
                          "is not valid JSON"),
    "sample-less manifest": (lambda r, n: RECIPE + [f"data.train={r}/none.json", f"run_dir={r}/run"],
                             "lists no samples"),
    "NaN found at load": (lambda r, n: RECIPE + [f"data.train={n}", f"run_dir={r}/run"],
                          "(global index 17) holds NaN"),
    "unwritable CLI --run-dir": (lambda r, n: CLI + [f"{r}/good.npy", "--k", "2", "--method", "kmeans",
                                                      "--run-dir", f"{r}/a_file/run"], "cannot be written"),
    "object-dtype .npy": (lambda r, n: CLI + [f"{r}/objects.npy", "--k", "2", "--method", "kmeans",
                                              "--run-dir", f"{r}/run"], "object-dtype array"),
    "non-finite stop": (lambda r, n: toy_cmd(f"{r}/run", *SHORT, "method.nan_at_step=3"),
                        "non-finite loss or gradient"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    np.save(root / "good.npy", np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32))
    return root, _manifests(root)


def _in_process(cmd: list[str], cwd) -> subprocess.CompletedProcess:
    """The same command through its entry point in this process (tests/inprocess.py)."""
    if cmd[1] == "-m":
        return cluster_cli_in_process(cmd[3:], cwd=cwd)
    return run_recipe_in_process(cmd[1], cmd[2:], cwd=cwd)


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_error_is_one_line_and_exit_2(inputs, case):
    root, nan = inputs
    cmd, text = CASES[case]
    _check(_in_process(cmd(root, nan), root), text)


@pytest.mark.parametrize("case", ["NaN found at load", "object-dtype .npy"])
def test_the_exit_code_and_message_reach_the_shell(inputs, case):
    """The same, as real processes: a recipe's and the CLI's."""
    root, nan = inputs
    cmd, text = CASES[case]
    _check(subprocess.run(cmd(root, nan), env=ENV, capture_output=True, text=True, timeout=600, cwd=root), text)


def _check(res: subprocess.CompletedProcess, text: str) -> None:
    assert res.returncode == 2, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and text in errors[0], res.stderr[-3000:]
    assert "Traceback" not in res.stderr


def test_debug_shows_the_traceback(inputs):
    root, nan = inputs
    cmd, _ = CASES["empty manifest"]
    for extra, env in (([], dict(ENV, DIST_CLUSTER_DEBUG="1")), (["--debug"], ENV)):
        res = subprocess.run(cmd(root, nan) + extra, env=env, capture_output=True, text=True, timeout=600, cwd=root)
        assert res.returncode != 0 and "Traceback" in res.stderr and "DataError" in res.stderr
