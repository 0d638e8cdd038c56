"""Large CPU work buffers backed by transparent huge pages where Linux offers them on request.

Most distributions set THP to `madvise`: a buffer gets 2 MiB pages only if asked before it is first written.
torch asks only when `THP_MEM_ALLOC_ENABLE=1` was set before it started. Writing a fresh 220 MB buffer (k-means'
centred copy of Fashion-MNIST) then takes 55,000 page faults of 4 KiB. Measured on that copy (2-core EPYC,
THP `madvise`): k-means' set-up 55 → 20 ms, each Lloyd pass 16.4 → 14.1 ms (fewer TLB misses). The kernel
grants 2 MiB pages only while it has free contiguous memory; `tests/test_hugepages.py` checks the advice (the
mapping's "hg" flag). Elsewhere (other systems, THP off, a refused call) the buffer is an ordinary torch.empty.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

import torch

MADV_HUGEPAGE = 14
HUGE = 2 << 20
MIN_BYTES = 8 << 20           # below this the faults cost little


@functools.lru_cache(maxsize=None)
def _madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


def advise(t: torch.Tensor) -> bool:
    """Ask for huge pages over the 2 MiB-aligned interior of t's memory (call before writing it); True if the
    kernel accepted the advice."""
    fn = _madvise()
    nbytes = t.numel() * t.element_size()
    if fn is None or t.device.type != "cpu" or nbytes < MIN_BYTES:
        return False
    start = -(-t.data_ptr() // HUGE) * HUGE
    end = (t.data_ptr() + nbytes) // HUGE * HUGE
    return end > start and fn(start, end - start, MADV_HUGEPAGE) == 0


def empty(shape, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """torch.empty, with huge pages requested for a large CPU buffer."""
    t = torch.empty(shape, dtype=dtype, device=device)
    advise(t)
    return t
