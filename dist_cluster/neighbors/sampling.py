"""Drawing UNIC's positive and negative neighbours from a mining result (SPEC U3 "Sampling", U7-6).

Negatives are uniform over Q(x_i)[τ2:N] without materialising it: draw j uniformly from the whole data set
and accept it when it ranks at or beyond τ2, i.e. when (d(i, j), j) ≥ (r_i, j*_i) in (distance, id) order,
where j*_i is the point ranked τ2 and r_i its distance. Acceptance is at least 1 − τ2/N per draw. Distances
are `pair_distance` on the mined features, the same function that produced r_i.
"""
from __future__ import annotations

import torch

from dist_cluster.neighbors.mining import MiningResult, pair_distance


def sample_positives(res: MiningResult, anchors: torch.Tensor, generator: torch.Generator | None = None,
                     exclude_self: bool = False) -> torch.Tensor:
    """One positive per anchor: uniform over N_clean(x_i) (the anchor itself when its set was dropped).

    N(x_i) includes x_i (paper, Eq. 3); `exclude_self` draws from the τ1 − 1 others instead.
    """
    anchors = anchors.long()
    lo = 1 if exclude_self else 0
    u = torch.rand(len(anchors), generator=generator, dtype=torch.float64)
    col = lo + (u * (res.tau1 - lo)).long().clamp_max(res.tau1 - 1 - lo)
    cand = res.positives[anchors.to(res.positives.device), col.to(res.positives.device)]
    return torch.where(res.clean[anchors.to(res.clean.device)], cand, anchors.to(cand.device))


class NegativeSampler:
    """Exact uniform sampling from each anchor's negatives Q(x_i)[τ2:N] by rejection."""

    def __init__(self, features: torch.Tensor, radius: torch.Tensor, first: torch.Tensor, metric: str):
        self.v, self.r, self.first, self.metric = features, radius, first, metric

    @classmethod
    def from_mining(cls, res: MiningResult) -> "NegativeSampler":
        if res.features is None:
            raise ValueError("the mining result holds no features; mine with keep_features=True")
        return cls(res.features, res.neg_radius, res.neg_first, res.metric)

    def admissible(self, anchors: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """True where cand ranks ≥ τ2 for its anchor."""
        d = pair_distance(self.v, anchors, cand, self.metric)
        r, j0 = self.r[anchors], self.first[anchors]
        return ((d > r) | ((d == r) & (cand >= j0))) & (cand != anchors)

    def sample(self, anchors: torch.Tensor, generator: torch.Generator | None = None,
               max_rounds: int = 10_000) -> torch.Tensor:
        anchors = anchors.long().to(self.v.device)
        out = torch.full_like(anchors, -1)
        todo = torch.arange(len(anchors), device=anchors.device)
        n = self.v.shape[0]
        for _ in range(max_rounds):
            if len(todo) == 0:
                return out
            cand = torch.randint(0, n, (len(todo),), generator=generator).to(anchors.device)
            ok = self.admissible(anchors[todo], cand)
            out[todo[ok]] = cand[ok]
            todo = todo[~ok]
        raise RuntimeError(f"{len(todo)} anchors found no negative in {max_rounds} draws")
