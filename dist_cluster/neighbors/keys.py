"""One int64 key per (score, id) whose integer order is "higher score, then smaller id".

The score's bits are mapped so that integer order equals float order (sign-magnitude to two's complement,
so −0 and +0 get the same key), multiplied by 2^b, and the complemented id fills the low b bits. One
`topk` over keys then breaks ties by id without a sort. b = 47 for float16/bfloat16 scores and 31 for
float32: at most 2^31 − 1 rows per call there. float64 scores are keyed by their float32 rounding (monotone,
so the key order never contradicts the score order; ties it creates are the caller's to check).
"""
from __future__ import annotations

import torch

_INT = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32}
_NEG_INF = {torch.float16: -0x7C00, torch.bfloat16: -0x7F80, torch.float32: -0x7F800000}     # orderable(−inf)


def id_bits(dtype: torch.dtype) -> int:
    return 47 if dtype in (torch.float16, torch.bfloat16) else 31


def exact(dtype: torch.dtype) -> bool:
    """Whether a key holds the whole score (float64 keeps only its float32 rounding)."""
    return dtype in _INT


def max_rows(dtype: torch.dtype) -> int:
    return (1 << id_bits(dtype)) - 1      # the largest id is the padding's


def orderable(s: torch.Tensor) -> torch.Tensor:
    """Integers (of the float's width) with the order of the float values (float64: of their float32 rounding).

    Negative floats are sign | magnitude; (b ^ magnitude mask) − (−1) is −magnitude, in the narrow type."""
    if s.dtype == torch.float64:
        s = s.float()
    b = s.view(_INT[s.dtype])
    neg = b >> (8 * s.element_size() - 1)                 # −1 where the sign bit is set, else 0
    return (b ^ (neg & torch.iinfo(b.dtype).max)) - neg


def lowest(dtype: torch.dtype) -> int:
    """The key of −inf with the padding's id (the largest): below every other key."""
    return _NEG_INF[torch.float32 if dtype == torch.float64 else dtype] << id_bits(dtype)


def low_bits(ids: torch.Tensor, bits: int) -> torch.Tensor:
    """The low part of the keys of ids in [0, 2^bits): smaller ids get larger values."""
    return ((1 << bits) - 1) - ids


def join(scores: torch.Tensor, low: torch.Tensor, bits: int) -> torch.Tensor:
    """Keys from scores and the low parts of their ids (`low_bits`, broadcast against scores)."""
    return torch.add(low, orderable(scores).long(), alpha=1 << bits)


def pack(scores: torch.Tensor, ids: torch.Tensor, bits: int) -> torch.Tensor:
    return join(scores, low_bits(ids, bits), bits)


def ids_of(keys: torch.Tensor, bits: int) -> torch.Tensor:
    return ((1 << bits) - 1) - (keys & ((1 << bits) - 1))


def score_part(keys: torch.Tensor, bits: int) -> torch.Tensor:
    return keys >> bits


def scores_of(keys: torch.Tensor, bits: int, dtype: torch.dtype) -> torch.Tensor:
    """The scores of keys of an exact dtype (−0 comes back as +0)."""
    o = (keys >> bits).to(_INT[dtype])
    neg = o >> (8 * torch.empty(0, dtype=dtype).element_size() - 1)
    return ((o + neg) ^ (neg & torch.iinfo(o.dtype).max)).view(dtype)
