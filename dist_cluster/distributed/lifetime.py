"""Workers die with their launcher.

torchrun and the deepspeed launcher start each worker in its own session, so killing the launcher's process
group leaves them training into the run directory. Linux's parent-death signal ends a worker when the
process that started it goes away; other systems keep the launchers' own behaviour.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` when the parent exits; True where that is supported (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:   # the parent died before the request: act on it now
        os.kill(os.getpid(), sig)
    return True
