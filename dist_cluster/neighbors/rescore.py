"""Exact re-scoring of low-precision kNN candidates, and the proof that no other row could have made the list.

A bfloat16/float16 GEMM (AMX on recent Xeons, tensor cores on GPUs) picks each query's best `k + rescore`
candidates over the whole database; they are then scored again in the data's precision. A row that is not a
candidate had a low-precision score of at most `last`, the worst candidate's, so its exact score is at most
`last + eps`, where eps bounds the low-precision error (inputs rounded, products accumulated in float32,
output rounded; Cauchy–Schwarz gives |Σ qᵢbᵢ| ≤ ‖q‖·‖b‖). A query whose k-th exact score is above that
bound is certified: its list is the exact list. Other queries are searched again in full precision.
"""
from __future__ import annotations

import contextlib

import torch

from dist_cluster.precision import exact_float32

UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}
# `gemm_dtype="auto"` takes bfloat16 candidates from this width on: below it, selecting and re-scoring the
# wider candidate lists costs more than the faster GEMM saves (measured on an AMX CPU: 0.82x the float32
# search's time at d=768, 0.90x at 384, 1.5x at 256)
AUTO_MIN_DIM = 384


def fast_low_precision(device: torch.device) -> bool:
    """Whether the device multiplies bfloat16 in hardware: tensor cores (compute capability 8.0+) or AMX."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return device.type == "cpu" and amx is not None and bool(amx())


def auto_dtype(x: torch.Tensor) -> torch.dtype | None:
    """bfloat16 for float32 rows at least AUTO_MIN_DIM wide on hardware with fast bfloat16, else None."""
    wide = x.dtype == torch.float32 and x.shape[1] >= AUTO_MIN_DIM
    return torch.bfloat16 if wide and fast_low_precision(x.device) else None


def error_bound(low: torch.dtype, d: int, q_norm: torch.Tensor, b_max: float, last: torch.Tensor,
                metric: str) -> torch.Tensor:
    """Per query, a bound on |low-precision score − exact score| for any database row of norm ≤ b_max.

    cosine scores q·b; l2 scores 2 q·b − ‖b‖² (the squared norm also rounded to `low`)."""
    u, g = UNIT_ROUNDOFF[low], 2 * d * 2.0 ** -24          # g: float32 accumulation, here and in the re-score
    dot = (2 * u + u * u + g) * q_norm * b_max
    eps = 2 * dot + u * b_max ** 2 if metric == "l2" else dot
    return eps + u * (1 + u) * last.abs()                  # the output's own rounding


@contextlib.contextmanager
def float32_accumulation(device: torch.device):
    """cuBLAS may add bf16/fp16 partial sums in that precision; the bound assumes float32 accumulation (as on
    CPU), so reduced-precision reductions are turned off for the low-precision search."""
    if device.type != "cuda":
        yield
        return
    mm = torch.backends.cuda.matmul
    old = mm.allow_bf16_reduced_precision_reduction, mm.allow_fp16_reduced_precision_reduction
    mm.allow_bf16_reduced_precision_reduction = mm.allow_fp16_reduced_precision_reduction = False
    try:
        yield
    finally:
        mm.allow_bf16_reduced_precision_reduction, mm.allow_fp16_reduced_precision_reduction = old


def positions(gid: torch.Tensor, ids: torch.Tensor, identity: bool) -> torch.Tensor:
    """Position of every id in the rank-ordered concatenation of global ids `gid` (identity: gid is arange, so
    an id is its position). Padding ids get some position; `exact_scores` skips them by their −inf mark."""
    if identity:
        return ids
    order = torch.argsort(gid)
    return order[torch.searchsorted(gid[order], ids).clamp_max(len(gid) - 1)]


@exact_float32()
def exact_scores(q: torch.Tensor, pos: torch.Tensor, marks: torch.Tensor, blocks, metric: str) -> torch.Tensor:
    """Scores of query i against database position pos[i, j], in q's precision, block by block.

    blocks yields (first position, rows, buffer); marks: the low-precision scores, whose ±inf (self, padding)
    are kept."""
    out = marks.to(q.dtype).clone()
    for start, m, buf in blocks:
        r, c = ((pos >= start) & (pos < start + m) & torch.isfinite(marks)).nonzero(as_tuple=True)
        if not len(r):
            continue
        rows = buf.index_select(0, pos[r, c] - start)
        s = torch.linalg.vecdot(q.index_select(0, r), rows)
        out[r, c] = 2 * s - (rows * rows).sum(1) if metric == "l2" else s
    return out
