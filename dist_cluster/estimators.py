"""scikit-learn-style estimators over the training engine: `CgMCR2(n_clusters=10).fit_predict(X)`.

`fit(X)` writes X as feature shards (cached by content hash), builds the same config as
`python -m dist_cluster.cluster X --method ...` and trains it through the launcher's `run(cfg)`: in this
process on one device by default, or under torchrun with `processes=N` (then in child processes, the same
command line). The fitted model is read back from the run directory, so both paths end identically.
Any config field is reachable through `overrides=("method.s=40", ...)`.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from dist_cluster.cluster.arrays import check_features, check_k


class _EngineClusterer(ClusterMixin, TransformerMixin, BaseEstimator):
    method = ""

    def _overrides(self) -> list[str]:
        raise NotImplementedError

    def _data_root(self) -> str:
        return self.data_root or os.path.join(tempfile.gettempdir(), "dist_cluster_data")

    def fit(self, X, y=None):
        """Train on X (N×D); y is ignored (clustering is unsupervised)."""
        from dist_cluster.cluster.inputs import _describe, array_manifest
        X = check_features(X, "X")
        check_k(self.n_clusters, len(X))
        if self.n_init < 1 or self.processes < 1:
            raise ValueError(f"n_init and processes must be ≥ 1, got {self.n_init} and {self.processes}")
        data = _describe(array_manifest(X, None, self._data_root(), "array"), "array")
        run_dir = self.run_dir or tempfile.mkdtemp(prefix=f"{self.method}_")
        overrides = self._overrides() + list(self.overrides)
        runs = (self._fit_here if self.processes == 1 else self._fit_torchrun)(data, run_dir, overrides)
        self._load(data, runs, overrides)
        if not self.run_dir:   # nothing of a temporary run outlives fit(); pass run_dir= to keep it
            shutil.rmtree(run_dir, ignore_errors=True)
            self.run_dir_ = None
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_here(self, data, run_dir, overrides):
        from dist_cluster.cluster.run import select, train_seeds
        out = contextlib.nullcontext() if self.verbose else contextlib.redirect_stdout(io.StringIO())
        with out:
            runs = train_seeds(self.method, data, self.n_clusters, overrides, run_dir, self.n_init,
                               self.random_state, world=1)
        return select(runs), runs

    def _fit_torchrun(self, data, run_dir, overrides):
        from dist_cluster.cluster.run import SeedRun
        from dist_cluster.distributed.spawn import free_port
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(self.processes),
               "--master_port", str(free_port()), "-m", "dist_cluster.cluster", data.manifest,
               "--method", self.method, "--k", str(self.n_clusters), "--n-init", str(self.n_init),
               "--seed", str(self.random_state), "--run-dir", run_dir, *overrides]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        res = subprocess.run(cmd, capture_output=not self.verbose, text=True, env=env)
        if res.returncode != 0:
            raise RuntimeError(f"training under torchrun failed ({res.returncode}):\n"
                               f"{(res.stderr or '')[-3000:]}")
        import json
        sel = json.load(open(os.path.join(run_dir, "summary.json")))
        best = SeedRun(sel["n_init"]["selected_seed"], sel["selected_run"], None)
        return best, [best]

    def _load(self, data, runs, overrides):
        from dist_cluster.cluster.configs import method_config
        from dist_cluster.launch import build_method
        best, all_runs = runs
        pred = np.load(os.path.join(best.run_dir, "predictions.npz"))
        self.labels_ = pred["cluster"].astype(np.int64)
        self.confidence_ = pred["confidence"]
        self.embedding_ = pred["embedding"]
        self.run_dir_ = best.run_dir
        self.seed_losses_ = {r.seed: r.loss for r in all_runs}
        cfg = method_config(self.method, data, self.n_clusters, overrides, best.run_dir, 1, best.seed)
        model = build_method(cfg)
        model.load_state_dict(torch.load(os.path.join(best.run_dir, "model.pt"), weights_only=True))
        self.model_ = model.eval()

    def _check_X(self, X):
        check_is_fitted(self, "model_")
        X = check_features(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} was fitted with "
                             f"{self.n_features_in_}")
        return torch.from_numpy(X)

    def predict(self, X):
        return self._outputs(self._check_X(X))[0]

    def transform(self, X):
        return self._outputs(self._check_X(X))[1]


class CgMCR2(_EngineClusterer):
    """CgMCR² on feature vectors (recipes/cgmcr2_digits.py's settings); `transform` gives the learned Z."""
    method = "cgmcr2"

    def __init__(self, n_clusters=10, *, warmup_epochs=20, finetune_epochs=60, hidden=1024, feature_dim=64,
                 batch_size=512, lr=1e-3, n_init=1, random_state=0, processes=1, overrides=(), run_dir=None,
                 data_root=None, verbose=False):
        self.n_clusters, self.warmup_epochs, self.finetune_epochs = n_clusters, warmup_epochs, finetune_epochs
        self.hidden, self.feature_dim, self.batch_size, self.lr = hidden, feature_dim, batch_size, lr
        self.n_init, self.random_state, self.processes, self.overrides = n_init, random_state, processes, overrides
        self.run_dir, self.data_root, self.verbose = run_dir, data_root, verbose

    def _overrides(self):
        return [f"method.warmup_epochs={self.warmup_epochs}", f"method.finetune_epochs={self.finetune_epochs}",
                f"method.hidden={self.hidden}", f"method.feature_dim={self.feature_dim}",
                f"method.global_batch={self.batch_size}", f"optim.lr={self.lr}"]

    @torch.no_grad()
    def _outputs(self, x):
        out = self.model_.predict(x, device=torch.device("cpu"))
        return out["labels"].numpy(), out["z"].numpy()


class UNIC(_EngineClusterer):
    """UNIC's cluster head on feature vectors; τ₂ = N / (2k) unless given; `transform` gives the cluster
    probabilities."""
    method = "unic"

    def __init__(self, n_clusters=10, *, epochs=30, batch_size=128, lr=1e-3, tau1=10, tau2=None, n_init=1,
                 random_state=0, processes=1, overrides=(), run_dir=None, data_root=None, verbose=False):
        self.n_clusters, self.epochs, self.batch_size, self.lr = n_clusters, epochs, batch_size, lr
        self.tau1, self.tau2 = tau1, tau2
        self.n_init, self.random_state, self.processes, self.overrides = n_init, random_state, processes, overrides
        self.run_dir, self.data_root, self.verbose = run_dir, data_root, verbose

    def _overrides(self):
        out = [f"method.epochs={self.epochs}", f"method.tau1={self.tau1}", f"optim.lr={self.lr}",
               f"data.batch_size={max(1, self.batch_size // self.processes)}"]
        return out + ([f"method.tau2={self.tau2}"] if self.tau2 else [])

    @torch.no_grad()
    def _outputs(self, x):
        probs = torch.softmax(self.model_.head(x).float(), dim=1)
        return probs.argmax(1).numpy(), probs.numpy()
