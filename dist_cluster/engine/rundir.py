"""One owner per run directory: an advisory lock held by rank 0 for the life of the run.

`fcntl.flock` dies with its process, so a lock left by a killed run never blocks the next one; the file's
text (host, PID, start time, command) only names the holder in the error a second run gets.
"""
from __future__ import annotations

import fcntl
import os
import socket
import sys
import time

from dist_cluster.errors import UserError


class RunDirError(UserError, RuntimeError):
    """The run directory cannot be used; the message says why (printed without a traceback)."""


class RunDirBusy(RunDirError):
    """Another live process owns this run directory."""


class NotWritable(RunDirError, PermissionError):
    pass


def check_writable(path: str, what: str) -> None:
    """Create `path` if needed and prove a file can be written there, or say so in those words."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise NotWritable(f"the {what} {path} cannot be written: {e.strerror or e}") from None


class RunDirLock:
    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, ".lock")
        self.fd: int | None = None

    def acquire(self) -> "RunDirLock":
        check_writable(os.path.dirname(self.path), "run directory")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise RunDirBusy(f"run directory {os.path.dirname(self.path)} is in use by another run ({holder}); "
                             "wait for it to end, or choose another run_dir=") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host={socket.gethostname()} pid={os.getpid()} since={time.strftime('%Y-%m-%dT%H:%M:%S')} "
                      f"command={' '.join(sys.argv)}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
