"""The evaluation pass every method makes: this rank's share of a split, then every rank's outputs in
global-index order."""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from dist_cluster.eval.gather import gather_in_index_order


@torch.no_grad()
def index_ordered_pass(batches: Iterable[dict], step: Callable[[dict], dict[str, torch.Tensor]]
                       ) -> dict[str, torch.Tensor]:
    """`step(batch)` → named per-sample outputs; returns {"index", *names} gathered from all ranks, sorted by
    global index, repeats dropped. Collective: every rank calls it. Outputs are kept as float32/long on the CPU
    between batches so a long split does not hold device memory."""
    cols: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        out = {"index": batch["index"].long()} | step(batch)
        for k, v in out.items():
            cols.setdefault(k, []).append(v.detach().cpu())
    if not cols:
        raise RuntimeError("the evaluation split is empty on this rank")
    keys = list(cols)
    return dict(zip(keys, gather_in_index_order(*[torch.cat(cols[k]) for k in keys])))
