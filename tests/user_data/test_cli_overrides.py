"""`python -m dist_cluster.cluster ... key=value`: an override the command would not honour is refused with one
`error:` line and exit code 2 before anything is written; the overrides it honours still pass."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from dist_cluster.cluster.__main__ import check_overrides, plan
from dist_cluster.cluster.arrays import InputError

ENV = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")


def _arrays(folder):
    np.save(folder / "X.npy", np.random.default_rng(0).random((40, 3)))
    np.save(folder / "y.npy", np.arange(40) % 2)


@pytest.mark.parametrize("method", ["kmeans", "cgmcr2"])
def test_run_dir_override_exits_2_naming_the_option_and_writes_nothing(tmp_path, method):
    _arrays(tmp_path)
    before = sorted(os.listdir(tmp_path))
    # cwd is tmp_path: the default run directory (runs/...) and data root (data/) would appear there
    res = subprocess.run([sys.executable, "-m", "dist_cluster.cluster", "X.npy", "--labels", "y.npy", "--method",
                          method, "--k", "2", f"run_dir={tmp_path / 'x'}"], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "use --run-dir DIR" in errors[0], res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("method, arg, message", [
    ("cgmcr2", "seed=3", "use --seed N"),
    ("unic", "method.num_clusters=4", "use --k K"),
    ("cgmcr2", "method.k=4", "use --k K"),
    ("pici", "data=fmnist", "pass the data as DATA"),
    ("cgmcr2", "data.train=other.json", "pass the data as DATA"),
    ("unic", "data.eval=other.json", "run a recipe with data.eval="),
    ("kmeans", "optim.lr=0.1", "--method kmeans trains nothing"),
    ("cgmcr2", "stray", "expected key=value, got 'stray'"),
])
def test_overrides_it_would_not_honour_are_refused(method, arg, message):
    with pytest.raises(InputError, match=re.escape(message)):
        check_overrides(method, [arg])


def test_overrides_it_honours_pass_and_nmi_average_reaches_the_table(tmp_path):
    check_overrides("cgmcr2", ["method.warmup_epochs=5", "optim.lr=2e-3", "engine.log_every=1", "name=mine"])
    _arrays(tmp_path)
    args, _, run_dir, overrides = plan([str(tmp_path / "X.npy"), "--method", "unic", "--k", "2", "--data-root",
                                        str(tmp_path / "d"), "--run-dir", str(tmp_path / "r"),
                                        "method.nmi_average=geometric", "method.epochs=1"])
    assert args.nmi == "geometric" and run_dir == str(tmp_path / "r")
    assert overrides == ["method.nmi_average=geometric", "method.epochs=1"]
