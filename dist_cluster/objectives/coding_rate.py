"""Coding rates of MCR² over the global batch (SPEC CgMCR² §3 Eq. 1, with the ½ factors of MCR² [48]).

    R(Z)    = ½ logdet(I_d + d/(n ε²) Σ_i z_i z_iᵀ)
    Rc(Z,Π) = Σ_j t_j/(2n) · logdet(I_d + d/(t_j ε²) Σ_i π_ij z_i z_iᵀ),     t_j = Σ_i π_ij + 1e-8

Z is n×d (one sample per row), Π is n×k (soft memberships), n the GLOBAL batch. `eps_is_squared=True`
feeds ε where the formula has ε² (what the reference code does, SPEC B2). Both work on the d×d side
(Sylvester: equal to the n×n form) with Cholesky log-determinants in float32, or float64 for float64 input,
whatever precision the model runs in.

Distribution (convention of dist_cluster.distributed.collectives: every rank returns the same value and,
after the engine's data-parallel mean, the one-process gradient):
  R   each rank all-reduces its local Gram ZᵀZ (d×d) with autograd; Z is never gathered.
      Per rank: n_local·d² + d³/3 flops, d² floats communicated.
  Rc  clusters are sharded across ranks. Every rank gathers Z and Π with autograd (n·(d+k) floats), builds
      and factorises only its ⌈k/W⌉ clusters' d×d matrices, chunk by chunk, and the per-rank partial sums
      are all-reduced as one scalar. Per rank: (k/W)·(n·d² + d³/3) flops, memory chunk·n·d + chunk·d².
      At ImageNet scale (n=3000, d=256, k=1000, W=8): 15 MB gathered and ~25 GFLOP per rank per step.
      The alternative, all-reducing k per-cluster Grams, would move k·d² floats (262 MB at that scale)
      and repeat all k factorisations on every rank.
"""
from __future__ import annotations

import torch

from dist_cluster.distributed import all_gather_with_grad, all_reduce_sum, all_reduce_sum_with_grad, rank, world_size

TRACE_EPS = 1e-8        # added to tr Π_j, as the reference code does
CHUNK_ELEMENTS = 1 << 24  # bound on chunk·(n·d + d²), the per-cluster Grams and their intermediate


def _loss_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _scale(d: int, count: torch.Tensor, eps: float, eps_is_squared: bool) -> torch.Tensor:
    return d / (count * (eps if eps_is_squared else eps * eps))


class _LogdetSPD(torch.autograd.Function):
    """log det M of SPD matrices from one Cholesky factor L; the backward is d/dM = M⁻¹ = L⁻ᵀL⁻¹ from the same
    factor: one triangular solve and one product, where autograd through the factorisation runs two solves,
    tril and the diagonal's chain. (cholesky_inverse would be one call, but batched on CUDA it goes through
    MAGMA, which waits for the device.)"""

    @staticmethod
    def forward(ctx, m: torch.Tensor) -> torch.Tensor:
        chol, info = torch.linalg.cholesky_ex(m)
        ok = info == 0
        ctx.save_for_backward(chol, ok)
        return torch.where(ok, 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1), torch.nan)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        chol, ok = ctx.saved_tensors
        eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device)
        inv_l = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
        return torch.where(ok, grad, 0.0)[..., None, None] * (inv_l.mT @ inv_l)


def logdet_spd(m: torch.Tensor) -> torch.Tensor:
    """log det of (a batch of) symmetric positive-definite matrices via Cholesky; NaN where the factorisation
    fails (cholesky_ex reports it on the device, so the engine's non-finite guard stops the run without the
    host sync of torch.linalg.cholesky's error check)."""
    return _LogdetSPD.apply(m)


def global_count(n_local: int, device=None) -> torch.Tensor:
    n = torch.full((), float(n_local), dtype=torch.float64, device=device)   # a fill: no blocking host copy
    return all_reduce_sum(n)


def coding_rate(z: torch.Tensor, eps: float, eps_is_squared: bool = False, gathered: bool = False
                ) -> torch.Tensor:
    """R(Z; ε) of the global batch from this rank's rows `z` (n_local×d); `gathered`: z already global."""
    z = z.to(_loss_dtype(z))
    d = z.shape[1]
    gram = z.T @ z
    if gathered:
        n = torch.full((), float(z.shape[0]), dtype=torch.float64, device=z.device)
    else:
        gram = all_reduce_sum_with_grad(gram)
        n = global_count(z.shape[0], z.device)
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    return 0.5 * logdet_spd(eye + _scale(d, n, eps, eps_is_squared).to(z.dtype) * gram)


def _cluster_terms(z: torch.Tensor, pi: torch.Tensor, eps: float, eps_is_squared: bool, chunk: int = 0
                   ) -> torch.Tensor:
    """Σ_j over the columns of `pi` of t_j·logdet(I + d/(t_j ε²) Zᵀ Π_j Z) (not yet divided by 2n)."""
    n, d = z.shape
    k = pi.shape[1]
    if k == 0:
        return z.new_zeros(())
    chunk = chunk or max(1, CHUNK_ELEMENTS // (n * d + d * d))
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    parts = []
    for c0 in range(0, k, chunk):
        p = pi[:, c0:c0 + chunk]                                      # n×c, a view
        grams = (p.T.unsqueeze(2) * z.unsqueeze(0)).transpose(1, 2) @ z   # c×d×d
        t = p.sum(0) + TRACE_EPS                                      # c
        scale = _scale(d, t, eps, eps_is_squared).view(-1, 1, 1)
        parts.append((t * logdet_spd(eye + scale * grams)).sum())
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum()


def cluster_coding_rate(z: torch.Tensor, pi: torch.Tensor, eps: float, eps_is_squared: bool = False,
                        gathered: bool = False, chunk: int = 0) -> torch.Tensor:
    """Rc(Z, Π; ε) of the global batch from this rank's rows (`gathered`: z and pi already global);
    `chunk` clusters are factorised at a time (0: as many as fit CHUNK_ELEMENTS)."""
    dtype = _loss_dtype(z)
    z, pi = z.to(dtype), pi.to(dtype)
    if not gathered:
        z, pi = all_gather_with_grad(z), all_gather_with_grad(pi)
    n = z.shape[0]
    w = world_size()
    if w == 1:
        return _cluster_terms(z, pi, eps, eps_is_squared, chunk) / (2 * n)
    mine = torch.tensor_split(torch.arange(pi.shape[1], device=pi.device), w)[rank()]
    part = _cluster_terms(z, pi[:, mine], eps, eps_is_squared, chunk)
    # Keep every rank's graph connected to the gathered inputs: the gathers' backward is a collective.
    part = part + 0.0 * (z.sum() + pi.sum())
    return all_reduce_sum_with_grad(part) / (2 * n)


def rate_reduction(z: torch.Tensor, pi: torch.Tensor, eps: float, eps_is_squared: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, Rc) of the global batch from local rows; the MCR² objective is R − Rc."""
    return (coding_rate(z, eps, eps_is_squared),
            cluster_coding_rate(z, pi, eps, eps_is_squared))
