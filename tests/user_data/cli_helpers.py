"""Run `python -m dist_cluster.cluster` the way a user does, on scikit-learn's digits."""
import os
import subprocess
import sys
import tempfile

import numpy as np
from inprocess import cluster_cli_in_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# a run without --cache-dir caches its data here, not in the user's ~/.cache
ENV = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1",
           DIST_CLUSTER_CACHE=os.environ.get("DIST_CLUSTER_CACHE",
                                             os.path.join(tempfile.gettempdir(), "dist_cluster_test_cache")))
SHORT_CGMCR2 = ["method.warmup_epochs=2", "method.finetune_epochs=3"]


def digits_files(folder) -> dict:
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    np.save(folder / "X.npy", x)
    np.save(folder / "y.npy", y)
    np.savez(folder / "digits.npz", features=x, labels=y)
    return {"X": str(folder / "X.npy"), "y": str(folder / "y.npy"), "npz": str(folder / "digits.npz")}


def cluster_cli(*args, nproc: int = 1, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """One process runs in this one (tests/inprocess.py); several under torchrun."""
    if nproc == 1:
        res = cluster_cli_in_process(list(args), env={"DIST_CLUSTER_CACHE": ENV["DIST_CLUSTER_CACHE"]}, cwd=ROOT)
        if check:
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        return res
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                    "--nproc_per_node", str(nproc),
                                                    "--master_port", str(29900 + os.getpid() % 90)]
    res = subprocess.run(launcher + ["-m", "dist_cluster.cluster", *map(str, args)], env=ENV, cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    if check:
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res
