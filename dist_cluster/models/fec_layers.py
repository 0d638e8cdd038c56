"""FEC's clustering layers (Chen et al., CVPR 2024, Eq. 4-7 and 9): hard clustering around adaptive-pooled
centres, used for token mixing (ClusterEnc inside a block) and for down-sampling (ClusterPool between stages).

Tensors are channels-first and contiguous throughout: features (B, C, N) with N = H*W flattened row-major,
centres (B, C, O); 1×1 convolutions and the MLP are batched GEMMs on that layout (fec_ops.pointwise), so
GroupNorm never sees another layout. The arithmetic is in fec_ops.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.layers import DropPath, GroupNorm1, LayerScale2d, Mlp
from torch import nn

from dist_cluster.models.fec_ops import (
    NORM_EPS,
    accumulation_dtype,
    adaptive_centres,
    aggregate,
    assign,
    channel_mlp,
    dispatch,
    nearest_centre,
    no_autocast,
    one_hot,
    pointwise,
    selected_cos,
    unit_centres,
)

__all__ = ["ClusterEnc", "ClusterPool", "FecBlock", "PoolTrace", "adaptive_centres", "aggregate", "assign",
           "dispatch", "accumulation_dtype", "selected_cos"]

AGG_WEIGHTS = ("none", "sim")
ASSIGN_ON = ("sim", "refined")


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
        split = (b * self.heads, self.head_dim, h, w)    # heads become batch elements: head-major channels
        return self.cluster_heads(k.reshape(split), v.reshape(split)).reshape(b, c, h, w)

    def cluster_heads(self, k: torch.Tensor, v: torch.Tensor, ck: torch.Tensor | None = None,
                      cv: torch.Tensor | None = None) -> torch.Tensor:
        """(B·h, e, H, W) keys and values (views are fine) and, if already pooled, their (B·h, e, O) centres
        → (B·h, e, N) dispatched features."""
        if ck is None:
            ck, cv = adaptive_centres(k, self.centres), adaptive_centres(v, self.centres)
        k, v = k.flatten(2), v.flatten(2)
        cn = unit_centres(ck)
        with no_autocast(k):
            ks = k.to(cn.dtype)
            m = torch.bmm(ks.transpose(1, 2), cn)                                # (B·h, N, O): ‖K_n‖·cos
            norm = torch.linalg.vector_norm(ks, dim=1).clamp_min(NORM_EPS)       # as F.normalize divides
            alpha, beta = self.sim_alpha.to(m.dtype), self.sim_beta.to(m.dtype)
            if self.assign_on == "refined":
                with torch.no_grad():
                    a = torch.sigmoid(beta + alpha * (m / norm.unsqueeze(-1))).argmax(2)
            else:
                a = m.detach().argmax(2)                                         # ‖K_n‖ > 0 leaves it unchanged
            s = torch.sigmoid(beta + alpha * (m.gather(2, a.unsqueeze(-1)).squeeze(-1) / norm))
        onehot = one_hot(a, cn.shape[2], accumulation_dtype(v.dtype))
        r = aggregate(v, cv, a, s if self.agg_weight == "sim" else None, onehot)
        return dispatch(r, a, s, onehot)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """`scale`: a per-channel factor folded into Proj (a block's layer scale)."""
        b, _, h, w = x.shape
        n, e = self.heads, self.head_dim
        # one GEMM for keys and values, rows ordered (head, k|v, e) so each head's k and v are strided views
        wkv = torch.stack([self.f.weight.view(n, e, -1), self.v.weight.view(n, e, -1)], 1).view(2 * n * e, -1)
        bkv = torch.stack([self.f.bias.view(n, e), self.v.bias.view(n, e)], 1).view(-1)
        kv = pointwise(x, wkv, bkv)
        # centres pooled per channel on the contiguous map (pooling the strided views would copy them)
        ckv = adaptive_centres(kv, self.centres).reshape(b * n, 2, e, -1)
        kv = kv.view(b * n, 2, e, h, w)
        d = self.cluster_heads(kv[:, 0], kv[:, 1], ckv[:, 0], ckv[:, 1]).view(b, n * e, h, w)
        wp, bp = self.proj.weight, self.proj.bias
        if scale is not None:
            wp, bp = wp * scale.view(-1, 1, 1, 1), bp * scale
        return pointwise(d, wp, bp)


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
            k = pointwise(x, self.conv_f.weight, self.conv_f.bias)
        v = pointwise(x, self.conv_v.weight, self.conv_v.bias)
        ck, cv = adaptive_centres(k, grid), adaptive_centres(v, grid)
        k, v = k.flatten(2), v.flatten(2)
        cn = unit_centres(ck)
        a = nearest_centre(k, cn)              # N/4 centres: chunked, never the whole (B, N, N/4) matrix
        weight = None
        if self.agg_weight == "sim":
            with no_autocast(k):
                weight = selected_cos(F.normalize(k.to(cn.dtype), dim=1), cn, a)
        r = aggregate(v, cv, a, weight)
        if trace is not None:
            trace.append(PoolTrace(a, r.transpose(1, 2).detach(), ck.transpose(1, 2).detach(), (h, w)))
        return self.conv_skip(x) + self.norm(r.reshape(b, -1, *grid))


class FecBlock(nn.Module):
    """MetaFormer block: x + DropPath(ls1·ClusterEnc(GN(x))), then + DropPath(ls2·MLP(GN(·))).
    The layer scales are folded into the last projection of each branch; the MLP's Linear layers run as
    channels-first GEMMs (same parameters)."""

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
        x = x + self.drop_path(self.token_mixer(self.norm1(x), self.ls1.gamma))
        fc1, fc2, g = self.mlp.fc1, self.mlp.fc2, self.ls2.gamma
        mlp = channel_mlp(self.norm2(x), [(fc1.weight, fc1.bias), (fc2.weight * g.unsqueeze(1), fc2.bias * g)],
                          self.mlp.act)
        return x + self.drop_path(mlp)
