"""Batches onto the compute device: pinned host memory, non-blocking copies on a side stream, one ahead.

On the CPU this is the plain `to(dtype)` the step always did, so results there do not change.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import torch


def channels_last_batches(cfg, method, device: torch.device) -> bool:
    """NHWC image batches on CUDA for convolutional methods: cuDNN picks its layout from the input, so the
    parameters never change theirs."""
    return device.type == "cuda" and cfg.engine.channels_last and method.convolutional


def _move(t: torch.Tensor, device, dtype, channels_last: bool, non_blocking: bool) -> torch.Tensor:
    if non_blocking and not t.is_pinned():
        t = t.pin_memory()
    t = t.to(device, non_blocking=non_blocking)
    if t.is_floating_point():
        t = t.to(dtype)
        if channels_last and t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
    return t


def to_device(batch: dict, device: torch.device, dtype: torch.dtype, channels_last: bool = False,
              non_blocking: bool = False) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = _move(v, device, dtype, channels_last, non_blocking)
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], torch.Tensor):
            out[k] = [_move(t, device, dtype, channels_last, non_blocking) for t in v]
        else:
            out[k] = v
    return out


def _tensors(batch: dict):
    for v in batch.values():
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, list):
            yield from (t for t in v if isinstance(t, torch.Tensor))


def device_batches(batches: Iterable[dict], device: torch.device, dtype: torch.dtype,
                   channels_last: bool = False) -> Iterator[tuple[dict, int]]:
    """(batch on device, samples skipped in it); on CUDA the next batch copies while the current one computes."""
    if device.type != "cuda":
        for b in batches:
            skipped = int(b.pop("_skipped", 0))
            yield to_device(b, device, dtype, channels_last), skipped
        return
    stream = torch.cuda.Stream(device)
    pending = None
    for b in batches:
        skipped = int(b.pop("_skipped", 0))
        with torch.cuda.stream(stream):
            nxt = to_device(b, device, dtype, channels_last, non_blocking=True)
        if pending is not None:
            yield pending
        torch.cuda.current_stream(device).wait_stream(stream)
        for t in _tensors(nxt):
            t.record_stream(torch.cuda.current_stream(device))
        pending = (nxt, skipped)
    if pending is not None:
        yield pending
