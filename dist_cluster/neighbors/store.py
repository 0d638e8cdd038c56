"""A mining result as one file aligned with global indices, so a resumed run reloads instead of re-mining.

The file is a torch.save of plain tensors, numbers and strings (loadable with weights_only=True), written
under a temporary name and renamed, so a crash never leaves a half-written file behind.
"""
from __future__ import annotations

import os
from dataclasses import fields
from typing import Callable

import torch

from dist_cluster.distributed import barrier, rank
from dist_cluster.neighbors.mining import MiningResult, clean_mask, mine_neighbors

FORMAT = 1


def save_mining(res: MiningResult, path: str) -> None:
    payload = {f.name: getattr(res, f.name) for f in fields(res)}
    payload = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in payload.items()}
    payload["format"] = FORMAT
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_mining(path: str, map_location="cpu") -> MiningResult:
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if payload.pop("format", None) != FORMAT:
        raise ValueError(f"{path} is not a mining file of format {FORMAT}")
    return MiningResult(**payload)


def mine_or_load(path: str, get_features: Callable[[], tuple], tau1: int, tau2: int, metric: str = "l2",
                 eta: float = 0, eta_quantile: float = 0.0, **mine_kwargs) -> MiningResult:
    """Load `path` if it exists (re-applying η if it changed), else mine, save on rank 0 and return.

    get_features() → (x_local, index_local or None, labels_local or None); called only when mining.
    Collective when it mines.
    """
    if os.path.exists(path):
        res = load_mining(path)
        wanted = {"tau1": tau1, "tau2": tau2, "metric": metric}
        diff = {k: (getattr(res, k), v) for k, v in wanted.items() if getattr(res, k) != v}
        if diff:
            raise ValueError(f"{path} was mined with other settings (file, asked): {diff}; "
                             "remove it or point to another file to mine again")
        clean, eta_used = clean_mask(res.union_size, eta, eta_quantile)
        if eta_used != res.eta:          # cleaning is cheap to redo from the stored union sizes
            res.clean, res.eta = clean, eta_used
            res.stats.pop("clean_positive_accuracy", None)
            if res.stats:
                res.stats.update(eta=eta_used, kept_fraction=float(clean.double().mean()))
        return res
    x, index, labels = get_features()
    res = mine_neighbors(x, tau1, tau2, metric, index=index, eta=eta, eta_quantile=eta_quantile, labels=labels,
                         **mine_kwargs)
    if rank() == 0:
        save_mining(res, path)
    barrier()
    return res
