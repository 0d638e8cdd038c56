"""How the rows of a k-means pass are cut: rows per GEMM tile, per cache-sized block, and when rows get a ones
column."""
from __future__ import annotations

import torch

TILE_ELEMENTS = 1 << 21        # rows × k of one score tile (8 MiB in float32) on CPU
# rows × d of a block that is read twice in a row on CPU (3 MiB in float32), so that the second read comes from
# the cache: the mean's float64 column sums (Fashion-MNIST: 12 ms in blocks of 1,003 rows, 124 ms of 8,192)
CACHE_ELEMENTS = 3 << 18
# Below this width the rows get a column of ones and the centres one of ‖c‖², so that a single GEMM gives
# ‖c‖² − 2·x·c (adding the bias to a score tile after the GEMM costs as much as a GEMM of 32 columns).
AUGMENT_BELOW = 128


def default_chunk(n: int, k: int, device: torch.device) -> int:
    """Rows per step of a pass: its score tile is chunk × k."""
    if device.type != "cpu":      # a 256 MiB float32 tile: few launches per pass
        return max(1, min(n, (1 << 26) // max(k, 1)))
    return max(256, min(8192, TILE_ELEMENTS // max(k, 1)))


def cache_chunk(n: int, d: int, device: torch.device) -> int:
    """Rows per block of a sweep that reads each block twice (the whole of n on a device)."""
    return max(1, n if device.type != "cpu" else min(n, CACHE_ELEMENTS // max(d, 1)))
