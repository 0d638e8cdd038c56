"""UNIC's neighbour mining, run once before training (SPEC U3), and the per-anchor negative draws.

dist_cluster.neighbors does the work (exact sharded kNN, second-order cleaning, negative radius, the exact
admissibility test, purity statistics, the mining file). This module decides where the file lives (one per
mining space, so changing the backbone or τ's never reuses a stale file; η is re-applied on load), keeps the
labels aligned with global indices beside it (GCD splits and statistics), and draws negatives from
(seed, epoch, anchor index) alone so that a resumed run sees the same pairs.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields

import numpy as np
import torch

from dist_cluster.distributed import all_gather_varlen, rank
from dist_cluster.methods.unic.pairs import NEG, NEG_KIND, pick, uniforms

MAX_DRAWS = 10_000


def space_key(cfg) -> dict:
    """What the mining space depends on: the method's SPACE fields and the data's SAMPLES fields."""
    m, d = cfg.method, cfg.data
    return ({f.name: getattr(m, f.name) for f in fields(m) if f.metadata.get("mining_space")}
            | {f"data.{f.name}": getattr(d, f.name) for f in fields(d) if f.metadata.get("samples")})


def mining_path(run_dir: str, cfg) -> str:
    """One file per mining space, so changing the backbone, the view or the τ's never reuses a stale file."""
    key = json.dumps(space_key(cfg), sort_keys=True, default=list)
    return os.path.join(run_dir, "mining", f"unic_{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt")


@dataclass
class Mined:
    res: object                   # dist_cluster.neighbors.MiningResult (every rank, global-index order)
    labels: np.ndarray            # (N,) ground truth where known, -1 elsewhere: statistics and GCD splits only

    def __post_init__(self):
        self.neighbours = self.res.positives.cpu().numpy()    # (N, τ1) global ids, self at column 0
        self.clean = self.res.clean.cpu().numpy()              # (N,) N(x_i) kept

    @property
    def n(self) -> int:
        return len(self.labels)

    def negatives(self, seed: int, epoch: int, idx: np.ndarray, labelled=None, m=None) -> np.ndarray:
        """x_n per anchor: uniform over N̄(x_i) ("mined"), uniform over D_t ("random"), or for D_L anchors
        "labelled": with probability α a labelled image of another class, else mined (SPEC U4 ablations)."""
        idx = np.asarray(idx, dtype=np.int64)
        kind = np.full(len(idx), "mined" if m is None else m.unlabelled_negatives, dtype=object)
        if labelled is not None and m is not None:
            kind[labelled.mask[idx]] = m.labelled_negatives
        out = np.empty(len(idx), dtype=np.int64)
        rand = np.flatnonzero(kind == "random")
        out[rand] = pick(uniforms(seed, epoch, idx[rand], NEG), self.n)
        lab = np.flatnonzero(kind == "labelled")
        if len(lab):
            take = uniforms(seed, epoch, idx[lab], NEG_KIND) < m.neg_alpha
            out[lab[take]] = labelled.other_class(idx[lab[take]], uniforms(seed, epoch, idx[lab[take]], NEG))
            kind[lab[~take]] = "mined"
        mined = np.flatnonzero(kind == "mined")
        out[mined] = self.mined_negatives(seed, epoch, idx[mined])
        bad = set(kind[(kind != "mined") & (kind != "random") & (kind != "labelled")])
        if bad:
            raise ValueError(f"unknown negative kind(s) {sorted(bad)}: use mined, random or labelled")
        return out

    def mined_negatives(self, seed: int, epoch: int, idx: np.ndarray) -> np.ndarray:
        """Rejection sampling, exact: candidate t of anchor i is floor(u(seed, epoch, i, t)·N), accepted when it
        ranks ≥ τ2 for i (acceptance ≥ 1 − τ2/N per draw)."""
        from dist_cluster.neighbors import NegativeSampler
        sampler = self._sampler = getattr(self, "_sampler", None) or NegativeSampler.from_mining(self.res)
        out = np.full(len(idx), -1, dtype=np.int64)
        todo = np.arange(len(idx))
        for t in range(MAX_DRAWS):
            if len(todo) == 0:
                return out
            cand = pick(uniforms(seed, epoch, idx[todo], NEG, t), self.n)
            ok = sampler.admissible(torch.from_numpy(idx[todo]), torch.from_numpy(cand)).cpu().numpy()
            out[todo[ok]] = cand[ok]
            todo = todo[~ok]
        raise RuntimeError(f"no negative found in {MAX_DRAWS} draws for anchors {idx[todo][:5].tolist()}")

    # ------------------------------------------------------------ statistics
    def purity_curve(self, ks) -> dict:
        """Purity of the k nearest (self excluded) over all anchors, and over the anchors that keep N(x_i)."""
        from dist_cluster.neighbors import purity_at_k
        if (self.labels < 0).any():
            return {}
        y = torch.from_numpy(self.labels)
        before = purity_at_k(self.res.neighbors, y, ks)
        after = purity_at_k(self.res.neighbors, y, ks, self.res.clean)
        kk = sorted(before)
        return {"ks": kk, "before": [before[k] for k in kk], "after": [after[k] for k in kk],
                "kept_fraction": float(self.res.clean.double().mean())}

    def log_record(self) -> dict:
        """Scalars for the metric log: the neighbours module's statistics plus |U| quantiles (SPEC U7-14)."""
        s = self.res.stats or {}
        rec = {k: v for k, v in s.items() if isinstance(v, (int, float))}
        for row in s.get("purity_vs_kept", []):
            rec[f"purity_at_q{row['quantile']:.1f}"] = row["purity"]
            rec[f"kept_at_q{row['quantile']:.1f}"] = row["kept"]
        u = self.res.union_size.double()
        for q in (0.1, 0.5, 0.9):
            rec[f"union_size_p{int(q * 100)}"] = float(u.quantile(q))
        rec |= {"eta": float(self.res.eta), "kept_fraction": float(self.res.clean.double().mean()), "n": self.n}
        return rec


def summary_line(rec: dict) -> str:
    """The console's line for a log_record(): what cleaning kept and, with labels, how pure the pairs are."""
    line = (f"mining: {rec['n']:,} samples; neighbour sets kept for {rec['kept_fraction']:.0%} of anchors "
            f"(η={rec['eta']:g})")
    if "positive_accuracy" in rec:
        line += f"; same-class positives {rec['positive_accuracy']:.3f}"
    if "clean_positive_accuracy" in rec:     # dropped when a reloaded file's η changed
        line += f" ({rec['clean_positive_accuracy']:.3f} where kept)"
    if "false_negative_rate" in rec:
        line += f"; same-class negatives {rec['false_negative_rate']:.3f}"
    return line + " (all statistics in metrics.jsonl, kind mining)"


def exists(run_dir: str, cfg) -> bool:
    return os.path.exists(mining_path(run_dir, cfg))


def _labels_path(run_dir: str, cfg) -> str:
    return mining_path(run_dir, cfg)[:-3] + "_labels.pt"


def _mine_or_load(run_dir: str, cfg, features=None):
    from dist_cluster import neighbors as nb
    m = cfg.method
    keep = max([m.tau1] + [k + 1 for k in m.purity_ks if k + 1 <= m.tau2])
    return nb.mine_or_load(mining_path(run_dir, cfg), features, m.tau1, m.tau2, m.mine_metric, eta=m.eta,
                           eta_quantile=m.eta_quantile, keep=keep, chunk=m.mine_chunk)


def load(run_dir: str, cfg) -> Mined:
    """The run's mining file and its labels (η re-applied when it changed)."""
    labels = torch.load(_labels_path(run_dir, cfg), weights_only=True)
    return Mined(_mine_or_load(run_dir, cfg), labels.numpy())


def mine(run_dir: str, cfg, x: torch.Tensor, index: torch.Tensor, labels: torch.Tensor) -> Mined:
    """Collective: mine from this rank's (features, global index, labels) and write the mining file; the
    labels file is written first, so a mining file always has its labels."""
    dev = x.device   # gathered on the compute device
    y_all = all_gather_varlen(labels.long().to(dev)).cpu()
    i_all = all_gather_varlen(index.long().to(dev)).cpu()
    all_labels = torch.full((len(i_all),), -1, dtype=torch.long).index_put_((i_all,), y_all)
    if rank() == 0:
        path = _labels_path(run_dir, cfg)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(all_labels, tmp)
        os.replace(tmp, path)
    if cfg.method.mine_l2norm:
        x = torch.nn.functional.normalize(x.float(), dim=1)
    known = _all_ranks_true(bool((labels >= 0).all()))
    res = _mine_or_load(run_dir, cfg, lambda: (x.float(), index.long(), labels.long() if known else None))
    return Mined(res, all_labels.numpy())


def _all_ranks_true(flag: bool) -> bool:
    from dist_cluster.distributed import all_reduce_sum, world_size
    t = torch.tensor([float(flag)])
    return bool(all_reduce_sum(t).item() == world_size())
