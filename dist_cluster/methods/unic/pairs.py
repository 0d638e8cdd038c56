"""Which positive and negative neighbour each anchor gets at each epoch (SPEC U3 sampling, U4 GCD variant).

Every draw is a pure function of (seed, epoch, anchor's global index, stream, draw number), through a
counter-based hash (SplitMix64), so the pairs do not depend on the batch an anchor lands in, the world size,
or whether the run was resumed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POS, NEG, NEG_KIND, POS_VIEW = 1, 2, 3, 4     # independent streams
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, epoch: int, index, stream: int, draw: int = 0) -> np.ndarray:
    """U[0,1) float64 per index, reproducible from (seed, epoch, index, stream, draw) alone."""
    with np.errstate(over="ignore"):
        key = np.uint64(0)
        for part in (seed, epoch, stream, draw):
            key = _mix(np.asarray(key ^ np.uint64(part & 0xFFFFFFFFFFFFFFFF)))
        z = _mix(np.asarray(index, dtype=np.int64).astype(np.uint64) ^ key)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def pick(u: np.ndarray, n) -> np.ndarray:
    """floor(u·n) clipped into [0, n) (n may be an array)."""
    return np.minimum((u * n).astype(np.int64), np.asarray(n) - 1)


def gcd_split(labels: np.ndarray, old_classes, fraction: float, seed: int) -> np.ndarray:
    """D_L mask: a seeded `fraction` of each old class's training images (SPEC U4: 50%)."""
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng(seed)
    for c in sorted(old_classes):
        members = np.flatnonzero(labels == c)
        chosen = rng.permutation(members)[: int(round(fraction * len(members)))]
        mask[chosen] = True
    return mask


@dataclass
class LabelledSets:
    """D_L grouped by class: members[c] = sorted global indices of the labelled images of class c."""
    mask: np.ndarray          # (N,) bool, True for D_L
    labels: np.ndarray        # (N,) class of D_L images, -1 elsewhere (D_U labels are never used)
    members: dict[int, np.ndarray]

    @classmethod
    def build(cls, labels: np.ndarray, mask: np.ndarray) -> "LabelledSets":
        lab = np.where(mask, labels, -1)
        members = {int(c): np.flatnonzero(lab == c) for c in np.unique(lab[mask])}
        return cls(mask, lab, members)

    def same_class(self, idx: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A uniform labelled image of each anchor's class (anchors must be in D_L)."""
        out = np.empty(len(idx), dtype=np.int64)
        for c, m in self.members.items():
            sel = self.labels[idx] == c
            out[sel] = m[pick(u[sel], len(m))]
        return out

    def other_class(self, idx: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A uniform labelled image of any other class (anchors must be in D_L)."""
        pool = np.flatnonzero(self.mask)
        pool = pool[np.argsort(self.labels[pool], kind="stable")]
        bounds = {c: (np.searchsorted(self.labels[pool], c, "left"), np.searchsorted(self.labels[pool], c, "right"))
                  for c in self.members}
        out = np.empty(len(idx), dtype=np.int64)
        for c, (lo, hi) in bounds.items():
            sel = self.labels[idx] == c
            j = pick(u[sel], len(pool) - (hi - lo))
            out[sel] = pool[np.where(j < lo, j, j + (hi - lo))]    # skip the anchor's own class block
        return out


def positives(seed: int, epoch: int, idx: np.ndarray, neighbours: np.ndarray, clean: np.ndarray,
              labelled: LabelledSets | None = None, labelled_positives: bool = True) -> np.ndarray:
    """x_p ~ U(N_clean(x_i)): a uniform column of the (N, τ1) neighbour matrix (self included) when the anchor
    kept its set, the anchor itself otherwise; D_L anchors draw a same-class labelled image instead."""
    idx = np.asarray(idx, dtype=np.int64)
    u = uniforms(seed, epoch, idx, POS)
    out = np.where(clean[idx], neighbours[idx, pick(u, neighbours.shape[1])], idx)
    if labelled is not None and labelled_positives:
        sel = labelled.mask[idx]
        if sel.any():
            out[sel] = labelled.same_class(idx[sel], u[sel])
    return out
