"""FEC's clustering layers (Chen et al., CVPR 2024, Eq. 4-7 and 9): hard clustering around adaptive-pooled
centres, used for token mixing (ClusterEnc inside a block) and for down-sampling (ClusterPool between stages).

Tensors are channels-first: features (B, C, N) with N = H*W flattened row-major, centres (B, C, O).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import DropPath, GroupNorm1, LayerScale2d, Mlp
from torch import nn

AGG_WEIGHTS = ("none", "sim")
ASSIGN_ON = ("sim", "refined")


def adaptive_centres(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Eq. 4: one centre per adaptive-average-pool window (PyTorch's windows, overlapping when uneven)."""
    return F.adaptive_avg_pool2d(x, grid).flatten(2)


def _assignment_precision(x: torch.Tensor) -> torch.Tensor:
    # bf16/fp16 cosines tie often; the argmax is cheap to take in fp32
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@torch.no_grad()
def assign(k: torch.Tensor, ck: torch.Tensor, alpha=None, beta=None, kn=None, cn=None) -> torch.Tensor:
    """Eq. 5: a(n) = argmax_o cos(Ck_o, K_n) → (B, N) long; with alpha/beta the argmax is on σ(β + α·cos).
    kn, cn: the unit-norm keys/centres if already computed (reused unless they are low precision)."""
    if kn is None or kn.dtype in (torch.float16, torch.bfloat16):
        kn = F.normalize(_assignment_precision(k), dim=1)
        cn = F.normalize(_assignment_precision(ck), dim=1)
    m = torch.einsum("bco,bcn->bon", cn, kn)
    if alpha is not None:
        m = torch.sigmoid(beta.to(m) + alpha.to(m) * m)
    return m.argmax(dim=1)


def selected_cos(kn: torch.Tensor, cn: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """cos(K_n, Ck_{a(n)}) → (B, N) from unit-norm keys and centres, with gradient; only the assigned entry of M
    is ever needed, so the O×N similarity matrix is never kept for backward."""
    return (kn * torch.gather(cn, 2, a.unsqueeze(1).expand(-1, cn.shape[1], -1))).sum(dim=1)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for sums and counts of low-precision values (bf16 stops counting at 256: 256 + 1 rounds to 256)."""
    return torch.promote_types(dtype, torch.float32)


def aggregate(v: torch.Tensor, cv: torch.Tensor, a: torch.Tensor, weight: torch.Tensor | None = None):
    """Eq. 6: R_o = (Cv_o + Σ_{n: a(n)=o} w_n V_n) / (1 + |{n: a(n)=o}|), w = 1 unless given (CoC).
    Sums and counts accumulate in float32 (float64 stays float64); R is cast back to the values' dtype."""
    acc = accumulation_dtype(cv.dtype)
    src = (v if weight is None else v * weight.unsqueeze(1)).to(acc)
    sums = torch.zeros(cv.shape, dtype=acc, device=cv.device).scatter_add(2, a.unsqueeze(1).expand_as(v), src)
    counts = torch.zeros(cv.shape[0], 1, cv.shape[2], dtype=acc, device=cv.device)
    counts.scatter_add_(2, a.unsqueeze(1), torch.ones(a.shape, dtype=acc, device=a.device).unsqueeze(1))
    return ((cv.to(acc) + sums) / (1.0 + counts)).to(cv.dtype)


def dispatch(r: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. 7 (before its MLP): D_n = s_n · R_{a(n)}, each pixel gets only its own centre's feature."""
    return torch.gather(r, 2, a.unsqueeze(1).expand(-1, r.shape[1], -1)) * s.unsqueeze(1)


class ClusterEnc(nn.Module):
    """Clustering-based feature encoding with `heads` independent heads of width `head_dim`."""

    def __init__(self, dim: int, heads: int, head_dim: int, centres: int = 2, assign_on: str = "sim",
                 agg_weight: str = "none"):
        super().__init__()
        if assign_on not in ASSIGN_ON or agg_weight not in AGG_WEIGHTS:
            raise ValueError(f"assign_on must be one of {ASSIGN_ON}, agg_weight one of {AGG_WEIGHTS}")
        self.heads, self.head_dim, self.centres = heads, head_dim, (centres, centres)
        self.assign_on, self.agg_weight = assign_on, agg_weight
        self.f = nn.Conv2d(dim, heads * head_dim, 1)      # keys (code name kept for checkpoint parity)
        self.v = nn.Conv2d(dim, heads * head_dim, 1)
        self.proj = nn.Conv2d(heads * head_dim, dim, 1)
        self.sim_alpha = nn.Parameter(torch.ones(1))
        self.sim_beta = nn.Parameter(torch.zeros(1))

    def cluster(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(B, h·e, H, W) keys and values → dispatched features of the same shape (before Proj)."""
        b, c, h, w = k.shape
        # heads become batch elements: head-major channel split
        k, v = k.reshape(b * self.heads, self.head_dim, h, w), v.reshape(b * self.heads, self.head_dim, h, w)
        ck, cv = adaptive_centres(k, self.centres), adaptive_centres(v, self.centres)
        k, v = k.flatten(2), v.flatten(2)
        kn, cn = F.normalize(k, dim=1), F.normalize(ck, dim=1)
        refined = self.assign_on == "refined"
        a = assign(k, ck, self.sim_alpha if refined else None, self.sim_beta if refined else None, kn, cn)
        s = torch.sigmoid(self.sim_beta + self.sim_alpha * selected_cos(kn, cn, a))
        r = aggregate(v, cv, a, s if self.agg_weight == "sim" else None)
        return dispatch(r, a, s).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one 1×1 conv for keys and values: the input is read once
        kv = F.conv2d(x, torch.cat([self.f.weight, self.v.weight]), torch.cat([self.f.bias, self.v.bias]))
        return self.proj(self.cluster(*kv.chunk(2, dim=1)))


@dataclass
class PoolTrace:
    """What one ClusterPool did: per input pixel its cluster, and per cluster R (Eq. 6) and key centre."""
    assignments: torch.Tensor      # (B, N) long, values in [0, N/4)
    values: torch.Tensor           # (B, O, C) representatives R before GroupNorm and skip
    key_centres: torch.Tensor      # (B, O, C) adaptive-pooled keys (what the reference visualiser clusters)
    in_hw: tuple[int, int] = field(default=(0, 0))


class ClusterPool(nn.Module):
    """Clustering-based pooling: (B, C_in, H, W) → (B, C_out, H/2, W/2) = Skip(X) + GN(R)  (Eq. 9).

    The key conv only feeds the argmax, so with unweighted aggregation it never receives a gradient; it is
    registered frozen (a fixed random projection, as in the reference code) unless agg_weight="sim".
    """

    def __init__(self, in_dim: int, out_dim: int, agg_weight: str = "none"):
        super().__init__()
        if agg_weight not in AGG_WEIGHTS:
            raise ValueError(f"agg_weight must be one of {AGG_WEIGHTS}")
        self.agg_weight = agg_weight
        self.conv_f = nn.Conv2d(in_dim, out_dim, 1)
        self.conv_v = nn.Conv2d(in_dim, out_dim, 1)
        self.conv_skip = nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1)
        self.norm = GroupNorm1(out_dim)
        if agg_weight == "none":
            self.conv_f.requires_grad_(False)

    def forward(self, x: torch.Tensor, trace: list | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        grid = (h // 2, w // 2)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.conv_f.weight.requires_grad):
            k = self.conv_f(x)
        v = self.conv_v(x)
        ck, cv = adaptive_centres(k, grid), adaptive_centres(v, grid)
        k, v = k.flatten(2), v.flatten(2)
        kn, cn = F.normalize(k, dim=1), F.normalize(ck, dim=1)
        a = assign(k, ck, kn=kn, cn=cn)
        r = aggregate(v, cv, a, selected_cos(kn, cn, a) if self.agg_weight == "sim" else None)
        if trace is not None:
            trace.append(PoolTrace(a, r.transpose(1, 2).detach(), ck.transpose(1, 2).detach(), (h, w)))
        return self.conv_skip(x) + self.norm(r.reshape(b, -1, *grid))


class FecBlock(nn.Module):
    """MetaFormer block: x + DropPath(ls1·ClusterEnc(GN(x))), then + DropPath(ls2·MLP(GN(·)))."""

    def __init__(self, dim: int, mlp_ratio: float, heads: int, head_dim: int, centres: int,
                 drop_path: float = 0.0, ls_init: float = 1e-5, assign_on: str = "sim", agg_weight: str = "none"):
        super().__init__()
        self.norm1 = GroupNorm1(dim)
        self.token_mixer = ClusterEnc(dim, heads, head_dim, centres, assign_on, agg_weight)
        self.ls1 = LayerScale2d(dim, ls_init)
        self.norm2 = GroupNorm1(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=0.0)
        self.ls2 = LayerScale2d(dim, ls_init)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.token_mixer(self.norm1(x))))
        mlp = self.mlp(self.norm2(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # per-pixel Linear layers
        return x + self.drop_path(self.ls2(mlp))
