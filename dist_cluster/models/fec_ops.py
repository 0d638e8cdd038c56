"""FEC's clustering arithmetic (Eq. 4-7) as batched GEMMs. Features are channels-first: (B, C, N), centres
(B, C, O), assignments (B, N) long.

With few centres (a ClusterEnc's O = 4..16) aggregation and dispatch are GEMMs with a one-hot (B, N, O)
matrix, forward and backward: scatter_add/gather would put ~N/O contended atomics on each centre on a GPU.
A pool's O = N/4 centres keep scatter_add (a handful of pixels per centre), and its (B, N, O) similarity is
taken chunk by chunk over N, so only one chunk is ever in memory.

Sums, counts and similarities of low-precision features are taken in float32 (`accumulation_dtype`) with
autocast off: bf16 stops counting at 256, and bf16 cosines tie often.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ONE_HOT_MAX_CENTRES = 16        # ClusterEnc's 4×4 centres; above this, scatter_add/gather
SCORE_ELEMENTS = 1 << 26        # bound on one chunk of a pool's (B, chunk, O) similarity
NORM_EPS = 1e-12                # F.normalize's
BATCHED_GEMM_PIXELS = 256       # 1×1 convolutions: per-image GEMMs from this many pixels, else one over all


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for sums and counts of low-precision values (bf16 stops counting at 256: 256 + 1 rounds to 256)."""
    return torch.promote_types(dtype, torch.float32)


def no_autocast(t: torch.Tensor):
    return torch.autocast(t.device.type, enabled=False)


def adaptive_centres(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Eq. 4: one centre per adaptive-average-pool window (PyTorch's windows, overlapping when uneven)."""
    return F.adaptive_avg_pool2d(x, grid).flatten(2)


def one_hot(a: torch.Tensor, o: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, N) → (B, N, O) in `dtype` (no data-dependent size check, unlike F.one_hot)."""
    return (a.unsqueeze(-1) == torch.arange(o, device=a.device)).to(dtype)


def unit_centres(ck: torch.Tensor) -> torch.Tensor:
    """Unit-norm centres in the accumulation dtype (O×C values: cheap, unlike normalising every key)."""
    return F.normalize(ck.to(accumulation_dtype(ck.dtype)), dim=1)


@torch.no_grad()
def nearest_centre(k: torch.Tensor, cn: torch.Tensor, chunk_elements: int | None = None) -> torch.Tensor:
    """Eq. 5 with the plain cosine: a(n) = argmax_o cos(Ck_o, K_n), first index on ties, for keys k (B, C, N)
    and unit centres cn (B, C, O). ‖K_n‖ scales a whole row of scores, so the keys are not normalised; the
    (B, chunk, O) scores are taken `chunk_elements` (default SCORE_ELEMENTS) at a time."""
    b = k.shape[0]
    step = max(1, (chunk_elements or SCORE_ELEMENTS) // max(1, b * cn.shape[2]))
    with no_autocast(k):
        return torch.cat([torch.bmm(ks.to(cn.dtype).transpose(1, 2), cn).argmax(2) for ks in k.split(step, dim=2)],
                         dim=1)


@torch.no_grad()
def assign(k: torch.Tensor, ck: torch.Tensor, alpha=None, beta=None) -> torch.Tensor:
    """Eq. 5: a(n) = argmax_o cos(Ck_o, K_n) → (B, N) long; with alpha/beta the argmax is on σ(β + α·cos)."""
    cn = unit_centres(ck)
    if alpha is None:
        return nearest_centre(k, cn)
    with no_autocast(k):
        ks = k.to(cn.dtype)
        cos = torch.bmm(ks.transpose(1, 2), cn) / torch.linalg.vector_norm(ks, dim=1).clamp_min(NORM_EPS)[..., None]
        return torch.sigmoid(beta.to(cos) + alpha.to(cos) * cos).argmax(2)


def selected_cos(kn: torch.Tensor, cn: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """cos(K_n, Ck_{a(n)}) → (B, N) from unit-norm keys and centres, with gradient (for many centres: only the
    assigned entry of each column is formed)."""
    return (kn * torch.gather(cn, 2, a.unsqueeze(1).expand(-1, cn.shape[1], -1))).sum(dim=1)


def aggregate(v: torch.Tensor, cv: torch.Tensor, a: torch.Tensor, weight: torch.Tensor | None = None,
              onehot: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 6: R_o = (Cv_o + Σ_{n: a(n)=o} w_n V_n) / (1 + |{n: a(n)=o}|), w = 1 unless given (CoC).
    Sums and counts accumulate in float32 (float64 stays float64); R is cast back to the values' dtype.
    `onehot`: a(·) as (B, N, O) if already built."""
    acc = accumulation_dtype(cv.dtype)
    o = cv.shape[2]
    with no_autocast(v):
        if onehot is None and o <= ONE_HOT_MAX_CENTRES:
            onehot = one_hot(a, o, acc)
        if onehot is not None:
            onehot = onehot.to(acc)
            counts = onehot.sum(1).unsqueeze(1)
            # the weight goes into the one-hot: bf16 values times bf16 weights are exact in float32
            sums = torch.bmm(v.to(acc), onehot if weight is None else onehot * weight.to(acc).unsqueeze(-1))
        else:
            src = v.to(acc) if weight is None else v.to(acc) * weight.to(acc).unsqueeze(1)
            sums = torch.zeros(cv.shape, dtype=acc, device=cv.device).scatter_add(2, a.unsqueeze(1).expand_as(v),
                                                                                   src)
            counts = torch.zeros(cv.shape[0], 1, o, dtype=acc, device=cv.device)
            counts.scatter_add_(2, a.unsqueeze(1), torch.ones(a.shape, dtype=acc, device=a.device).unsqueeze(1))
        return ((cv.to(acc) + sums) / (1.0 + counts)).to(cv.dtype)


def dispatch(r: torch.Tensor, a: torch.Tensor, s: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 7 (before its MLP): D_n = s_n · R_{a(n)}, each pixel gets only its own centre's feature. With few
    centres R @ onehotᵀ (one nonzero term per sum: exact in any dtype), else a gather."""
    o = r.shape[2]
    if onehot is None and o <= ONE_HOT_MAX_CENTRES:
        onehot = one_hot(a, o, r.dtype)
    if onehot is not None:
        with no_autocast(r):
            d = torch.bmm(r, onehot.to(r.dtype).transpose(1, 2))
    else:
        d = torch.gather(r, 2, a.unsqueeze(1).expand(-1, r.shape[1], -1))
    return d * s.to(d.dtype).unsqueeze(1)


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1×1 convolution (weight (C', C[, 1, 1])) of channels-first x as GEMMs, the result channels-first."""
    return channel_mlp(x, [(weight, bias)])


def channel_mlp(x: torch.Tensor, layers: list, act=None) -> torch.Tensor:
    """Per-pixel Linear layers [(weight, bias), ...] with `act` between them, on channels-first x.

    Many pixels per image: one batched GEMM per layer on the (B, C, N) layout as it is (bias added in the
    GEMM). Few pixels (late stages): the per-image GEMMs would be too thin, so the pixels are transposed
    once into (B·N, C) rows for single GEMMs, and back at the end."""
    b, c, h, w = x.shape
    if h * w >= BATCHED_GEMM_PIXELS:
        y = x.reshape(b, c, h * w)
        for i, (weight, bias) in enumerate(layers):
            wm = weight.reshape(weight.shape[0], -1).expand(b, -1, -1)
            y = torch.bmm(wm, y) if bias is None else torch.baddbmm(bias.view(1, -1, 1), wm, y)
            y = act(y) if act is not None and i < len(layers) - 1 else y
        return y.view(b, -1, h, w)
    y = x.reshape(b, c, h * w).transpose(1, 2)
    for i, (weight, bias) in enumerate(layers):
        y = F.linear(y, weight.reshape(weight.shape[0], -1), bias)
        y = act(y) if act is not None and i < len(layers) - 1 else y
    return y.transpose(1, 2).contiguous().view(b, -1, h, w)
