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


def id_bits(dtype: torch.dtype) -> int:
    return 47 if dtype in (torch.float16, torch.bfloat16) else 31


def exact(dtype: torch.dtype) -> bool:
    """Whether a key holds the whole score (float64 keeps only its float32 rounding)."""
    return dtype in _INT


def max_rows(dtype: torch.dtype) -> int:
    return (1 << id_bits(dtype)) - 1      # the largest id is the padding's


def orderable(s: torch.Tensor) -> torch.Tensor:
    """int64 with the order of the float values (float64: of their float32 rounding)."""
    if s.dtype == torch.float64:
        s = s.float()
    b = s.view(_INT[s.dtype]).long()
    mag = b & ((1 << (8 * s.element_size() - 1)) - 1)
    return torch.where(b < 0, -mag, mag)


def pack(scores: torch.Tensor, ids: torch.Tensor, bits: int) -> torch.Tensor:
    """Keys of scores with ids in [0, 2^bits): ids may broadcast against scores."""
    return orderable(scores) * (1 << bits) + (((1 << bits) - 1) - ids)


def ids_of(keys: torch.Tensor, bits: int) -> torch.Tensor:
    return ((1 << bits) - 1) - (keys & ((1 << bits) - 1))


def score_part(keys: torch.Tensor, bits: int) -> torch.Tensor:
    return keys >> bits
