"""The CgMCR² objective on the global batch: −R(Z) + Rc(Z, Π) + L_Ncut(Π; A, γ) (SPEC CgMCR² Eq. 8-9).

Inputs are this rank's rows. Z, Π (and F for the code affinity) are gathered with autograd, so every rank
computes the same loss; R reduces the local d×d Gram instead of using the gathered Z. With the paper's
detached affinity, −R reaches only the feature head and L_Ncut only the cluster head (the shared pre-feature
layer gets both), which is the warm-up of Eq. 9 when Rc is weighted 0.
"""
from __future__ import annotations

import torch
from torch import nn

from dist_cluster.distributed import all_gather_with_grad
from dist_cluster.objectives import ncut
from dist_cluster.objectives.coding_rate import cluster_coding_rate, coding_rate


class CgMCR2Objective(nn.Module):
    def __init__(self, mcfg):
        super().__init__()
        self.m = mcfg
        for name, allowed in (("affinity", ("cosine", "gaussian", "code")), ("post", ("topk", "none", "ds")),
                              ("orth_form", ("paper", "code")), ("degree", ("row", "col"))):
            if getattr(mcfg, name) not in allowed:
                raise ValueError(f"method.{name} must be one of {allowed}, got {getattr(mcfg, name)!r}")
        # the reference code's learnable soft threshold b (only its affinity uses it); shape (1,), not a 0-dim
        # tensor, because DeepSpeed broadcasts parameters as byte views, which 0-dim tensors cannot give
        self.threshold = nn.Parameter(torch.zeros(1)) if mcfg.affinity == "code" else None

    def affinity(self, z: torch.Tensor, f: torch.Tensor | None) -> ncut.Affinity:
        """A over the global batch from unit-norm Z (or un-normalised F for the code affinity)."""
        m = self.m
        if m.detach_affinity:
            z = z.detach()
            f = f.detach() if f is not None else None
        if m.affinity == "cosine":
            a = ncut.cosine_affinity(z)
        elif m.affinity == "gaussian":
            a = ncut.gaussian_affinity(z, m.sigma)
        else:
            a = ncut.soft_threshold_affinity(f.to(z.dtype), self.threshold.to(z.dtype), m.k)
        if m.post == "ds":
            a = ncut.sinkhorn(a)
        if m.post == "topk":
            a = ncut.keep_top_s(a, m.s, ties=m.affinity == "code")
            if m.affinity == "code":
                a = ncut.row_l2_normalize(a)
        return ncut.symmetrize(a) if m.symmetrize else a

    def forward(self, z: torch.Tensor, pi: torch.Tensor, weights: dict[str, float],
                f: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss terms `loss/R` (= −R), `loss/Rc`, `loss/ncut` for local rows z (unit norm), pi, f (code only).

        A term whose weight is 0 is computed without gradient (for the curves) when track_all_terms, else
        left out.
        """
        m = self.m
        dtype = torch.promote_types(z.dtype, torch.float32)
        z, pi = z.to(dtype), pi.to(dtype)
        zg, pig = all_gather_with_grad(z), all_gather_with_grad(pi)
        fg = all_gather_with_grad(f.to(dtype)) if m.affinity == "code" else None
        out: dict[str, torch.Tensor] = {}

        def term(name, fn):
            w = float(weights.get(name, 1.0))
            if w != 0.0:
                out[f"loss/{name}"] = fn()
            elif m.track_all_terms:
                with torch.no_grad():
                    out[f"loss/{name}"] = fn().detach()

        term("R", lambda: -coding_rate(z, m.eps, m.eps_is_squared))
        term("Rc", lambda: cluster_coding_rate(zg, pig, m.eps, m.eps_is_squared, gathered=True))

        def ncut_loss():
            cut, orth = ncut.ncut_terms(pig, self.affinity(zg, fg), m.gamma, m.orth_form, m.degree)
            out["ncut/cut"], out["ncut/orth"] = cut.detach(), orth.detach()
            return cut + orth

        term("ncut", ncut_loss)
        return out
