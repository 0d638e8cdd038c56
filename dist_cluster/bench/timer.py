"""Paired timing: ours and its peer alternate within one process, each time the median of N repetitions."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def timed(fn: Callable):
    """(seconds, result) of one call."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def paired(fns: dict[str, Callable], repeats: int = 3, warmup: bool = False,
           pause: float = 0.5) -> tuple[dict, dict]:
    """Median seconds of each fn over `repeats` rounds (the order alternates every round), and its last result.

    A fn may return `Measured(seconds, result)` to time only part of its work. `pause` seconds separate the
    calls: BLAS and OpenMP worker threads keep spinning for a while after a call and would slow the next one.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    last: dict = {}
    names = list(fns)
    if warmup:
        for k in names:
            fns[k]()
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]):
            time.sleep(pause)
            secs, out = timed(fns[k])
            if isinstance(out, Measured):
                secs, out = out.seconds, out.result
            times[k].append(secs)
            last[k] = out
    return {k: statistics.median(v) for k, v in times.items()}, last


class Measured:
    """A result with its own timing (e.g. per iteration, or the slowest rank's)."""

    def __init__(self, seconds: float, result=None):
        self.seconds, self.result = seconds, result


def time_on_shard(rank: int, world: int, x, repeats: int, run: Callable):
    """On a spawned rank: `run(shard)` over this rank's contiguous share of the array `x`, timed `repeats` times,
    each start aligned by a barrier. Returns ([seconds], the last result)."""
    import torch

    from dist_cluster.distributed import barrier
    a, b = len(x) * rank // world, len(x) * (rank + 1) // world
    shard, times, out = torch.from_numpy(x[a:b]), [], None
    for _ in range(repeats):
        barrier()
        t = time.perf_counter()
        out = run(shard)
        times.append(time.perf_counter() - t)
    return times, out
