"""Every sample or shard the data layer skips is counted here, and only the first few are printed.

Loaders running in the training process record into this process-wide count; the engine takes it once per
epoch, adds the per-batch `_skipped` flags (which also cover worker processes), sums over ranks, and logs
`data/skipped`. A shard with a thousand bad samples thus gives a few warnings and one summary line an epoch.
"""
from __future__ import annotations

import logging

log = logging.getLogger("dist_cluster.data")
WARN_FIRST = 5
_state = {"count": 0, "warned": 0, "seen": set()}


def warn(message: str) -> None:
    """Print a skip's message while this run's budget of WARN_FIRST lasts (the skip is counted elsewhere);
    a message already printed is not printed again (the same split read twice in a run)."""
    if message in _state["seen"]:
        return
    if _state["warned"] < WARN_FIRST:
        _state["seen"].add(message)
        _state["warned"] += 1
        tail = "; further skips are counted in data/skipped, not printed" if _state["warned"] == WARN_FIRST else ""
        log.warning("%s%s", message, tail)


def record(message: str, n: int = 1) -> None:
    """Count `n` skipped samples (those the batches' `_skipped` flags do not carry) and warn."""
    _state["count"] += n
    warn(message)


def take() -> int:
    """Skips recorded since the last call (the engine calls it once an epoch)."""
    n, _state["count"] = _state["count"], 0
    return n


def reset() -> None:
    """Forget the count and the warnings printed (a new run in the same process)."""
    _state.update(count=0, warned=0, seen=set())
