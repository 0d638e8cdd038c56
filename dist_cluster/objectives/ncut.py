"""Relaxed normalised cut of CgMCR² (SPEC CgMCR² §3 Eq. 6-8, B3-B5) with its affinities.

    H = Π·Diag(vol + 1e-6)^{-½},   vol_j = Σ_i π_ij d_i
    L_Ncut = tr(Hᵀ L H) + orth,    L = D − A
    orth = (γ/2)·‖HᵀDH − I‖_F²  (orth_form="paper")   or   γ·‖HᵀDH − I‖_F / k  (orth_form="code")

Every function here takes GLOBAL tensors (the method gathers Z, F and Π with autograd), so each rank
computes the same value; by the convention in dist_cluster.distributed.collectives the engine's mean of
gradients is then the one-process gradient. Building the affinity costs n²·d per rank (n = global batch,
2.3 GFLOP at n=3000, d=256, small beside the heads); the top-s affinity is kept sparse (n·s entries), so the
cut costs n·s·k and never an n×n×k product. The code's tie-inclusive top-s keeps a number of entries that
depends on the data, so it stays a dense n×n matrix with the rest zeroed: a sparse form would read its size on
the host every step. Degrees are row sums (paper) or column sums (code); the top-s matrix is not symmetric
unless `symmetrize=True`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

VOL_EPS = 1e-6


class SparseAffinity(NamedTuple):
    """An n×n affinity as COO triplets (duplicates add up)."""
    rows: torch.Tensor
    cols: torch.Tensor
    vals: torch.Tensor
    n: int

    def to_dense(self) -> torch.Tensor:
        a = self.vals.new_zeros(self.n, self.n)
        return a.index_put((self.rows, self.cols), self.vals, accumulate=True)

    def transpose(self) -> "SparseAffinity":
        return SparseAffinity(self.cols, self.rows, self.vals, self.n)


Affinity = torch.Tensor | SparseAffinity


# ---- affinities (dense n×n) -------------------------------------------------------------------------------
def cosine_affinity(z: torch.Tensor) -> torch.Tensor:
    """Paper: ZᵀZ of unit-norm embeddings (normalised here, so un-normalised input is fine)."""
    z = F.normalize(z, dim=1)
    return z @ z.T


def gaussian_affinity(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """Ablation Eq. 10: exp(−‖z_i − z_j‖² / 2σ²) on unit-norm embeddings."""
    z = F.normalize(z, dim=1)
    sq = (2.0 - 2.0 * (z @ z.T)).clamp_min(0.0)
    return torch.exp(-sq / (2.0 * sigma * sigma))


def soft_threshold_affinity(f: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Reference code: (1/k)·sign(c)·max(|c| − b, 0) with c = F Fᵀ of the un-normalised feature-head output."""
    c = f @ f.T
    return torch.sign(c) * F.relu(c.abs() - b) / k


# ---- post-processing -----------------------------------------------------------------------------------
def keep_top_s(a: torch.Tensor, s: int, ties: bool = False) -> Affinity:
    """P_s: keep the s largest entries of every row, sparse (`ties=True`: every entry ≥ the s-th largest, as
    the code, dense with the others zeroed)."""
    n = a.shape[0]
    s = min(s, a.shape[1])
    if not ties:
        vals, cols = a.topk(s, dim=1)
        rows = torch.arange(n, device=a.device).repeat_interleave(s)
        return SparseAffinity(rows, cols.reshape(-1), vals.reshape(-1), n)
    kth = a.topk(s, dim=1).values[:, -1:]
    return torch.where(a >= kth, a, 0.0)


def row_l2_normalize(aff: Affinity) -> Affinity:
    if not isinstance(aff, SparseAffinity):
        return aff / (aff * aff).sum(1, keepdim=True).clamp_min(1e-24).sqrt()
    sq = aff.vals.new_zeros(aff.n).index_add(0, aff.rows, aff.vals * aff.vals)
    return aff._replace(vals=aff.vals / sq.clamp_min(1e-24).sqrt()[aff.rows])


def sinkhorn(a: torch.Tensor, iters: int = 5, eps: float = 0.175) -> torch.Tensor:
    """Ablation Eq. 11-12 as the reference code runs it: log-domain Sinkhorn on a/eps, result × n."""
    n = a.shape[0]
    log_p = a / eps
    for _ in range(iters):
        log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True)
        log_p = log_p - torch.logsumexp(log_p, dim=0, keepdim=True)
    return torch.exp(log_p) * n


def symmetrize(aff: Affinity) -> Affinity:
    if isinstance(aff, SparseAffinity):
        return SparseAffinity(torch.cat([aff.rows, aff.cols]), torch.cat([aff.cols, aff.rows]),
                              torch.cat([aff.vals, aff.vals]) * 0.5, aff.n)
    return 0.5 * (aff + aff.T)


# ---- the loss --------------------------------------------------------------------------------------------
def degrees(aff: Affinity, degree: str = "row") -> torch.Tensor:
    if degree not in ("row", "col"):
        raise ValueError(f"degree must be 'row' or 'col', got {degree!r}")
    if isinstance(aff, SparseAffinity):
        idx = aff.rows if degree == "row" else aff.cols
        return aff.vals.new_zeros(aff.n).index_add(0, idx, aff.vals)
    return aff.sum(1 if degree == "row" else 0)


def quadratic(aff: Affinity, h: torch.Tensor) -> torch.Tensor:
    """tr(Hᵀ A H)."""
    if isinstance(aff, SparseAffinity):   # Σ_e a_e ⟨h_row, h_col⟩: CUDA's sparse matmul would coalesce (a sync)
        return (aff.vals * (h[aff.rows] * h[aff.cols]).sum(1)).sum()
    return (h * (aff @ h)).sum()


def ncut_terms(pi: torch.Tensor, aff: Affinity, gamma: float, orth_form: str = "code", degree: str = "row"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tr(HᵀLH), orthogonality penalty) for global memberships `pi` (n×k) and affinity `aff` (n×n)."""
    if orth_form not in ("paper", "code"):
        raise ValueError(f"orth_form must be 'paper' or 'code', got {orth_form!r}")
    dtype = torch.promote_types(pi.dtype, torch.float32)
    pi = pi.to(dtype)
    aff = aff._replace(vals=aff.vals.to(dtype)) if isinstance(aff, SparseAffinity) else aff.to(dtype)
    deg = degrees(aff, degree)
    vol = (pi * deg.unsqueeze(1)).sum(0)
    h = pi * (vol + VOL_EPS).rsqrt()
    dh = deg.unsqueeze(1) * h
    cut = (h * dh).sum() - quadratic(aff, h)
    gram = h.T @ dh
    diff = gram - torch.eye(gram.shape[0], dtype=dtype, device=gram.device)
    if orth_form == "paper":
        orth = 0.5 * gamma * (diff * diff).sum()
    else:
        orth = gamma * torch.linalg.matrix_norm(diff) / pi.shape[1]
    return cut, orth


def ncut_loss(pi: torch.Tensor, aff: Affinity, gamma: float, orth_form: str = "code", degree: str = "row"
              ) -> torch.Tensor:
    cut, orth = ncut_terms(pi, aff, gamma, orth_form, degree)
    return cut + orth
