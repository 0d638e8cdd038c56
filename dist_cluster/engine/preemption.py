"""SIGTERM and SIGUSR1 end a run cleanly: finish the optimizer step, save on every rank, exit.

Slurm sends SIGTERM before it preempts a job and on `scancel` (SIGKILL follows after the grace time); torchrun
and the deepspeed launcher forward it to their workers. While `Trainer.fit` trains, a handler only records the
signal. Each rank's record travels in the non-finite guard's all_reduce, which every optimizer step already
makes (no collective of its own), so all ranks see it after the same step; they save through the trainer's
normal path and raise `StopRun`, a SystemExit whose code is 128 + the signal number (143 for SIGTERM, 138 for
SIGUSR1), agreed by all ranks. The first signal restores the default handlers, so a second one ends the process
at once. SIGINT keeps Python's KeyboardInterrupt. A worker whose launcher died gets SIGTERM as its parent-death
signal (dist_cluster/distributed/lifetime.py); that one still ends it at once, as it did before: its step may
never finish.

Under submitit its own handlers stay in charge of its preemption signal (USR2, or $SUBMITIT_PREEMPT_SIGNAL),
which requeues the job; its SIGTERM handler (which only logs) is replaced while training and put back after.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

import torch
import torch.distributed as dist

from dist_cluster.distributed import all_reduce_max, barrier

HANDLED = (signal.SIGTERM, signal.SIGUSR1)
PR_GET_PDEATHSIG = 2


def exit_code(signum: int) -> int:
    """The shell's code for a process ended by `signum`: what launchers and schedulers already expect."""
    return 128 + int(signum)


class StopRun(SystemExit):
    """Raised out of `Trainer.fit` once the checkpoint is complete on every rank; exits with 128 + signal."""

    def __init__(self, signum: int, step: int, path: str):
        super().__init__(exit_code(signum))
        self.signum, self.step, self.path = int(signum), step, path

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def submitit_signal() -> int | None:
    """submitit's preemption signal when this process runs a submitit job, else None."""
    if "SUBMITIT_FOLDER" not in os.environ:   # set by submitit's process_job before it runs the job
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


def parent_death_signal() -> int:
    """The signal the kernel sends this process when its parent exits (0: none, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        sig = ctypes.c_int(0)
        if ctypes.CDLL(None, use_errno=True).prctl(PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0) != 0:
            return 0
    except (OSError, AttributeError):
        return 0
    return sig.value


class StopSignals:
    """Handlers for SIGTERM/SIGUSR1 while training, and this rank's part of the all-rank decision.

    `attach(guard)` must be called on every rank (the reduced vector's length must match); `install()` only
    does anything in the main thread, where Python runs signal handlers.
    """

    def __init__(self, rank: int = 0, world_size: int = 1):
        self.rank, self.world_size = rank, world_size
        self.signum = 0            # the first signal this process received
        self.requested = False     # some rank received one, as of the last optimizer step
        self.previous: dict[int, object] = {}
        self.parent, self.death_signal = os.getppid(), 0

    # ---- handlers ------------------------------------------------------------------------------------------
    def install(self) -> bool:
        if threading.current_thread() is not threading.main_thread():
            return False
        keep = submitit_signal()
        self.parent, self.death_signal = os.getppid(), parent_death_signal()
        for sig in HANDLED:
            if sig != keep:
                self.previous[sig] = signal.signal(sig, self._on_signal)
        return bool(self.previous)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()

    def _on_signal(self, signum, frame) -> None:
        if signum == self.death_signal and os.getppid() != self.parent:
            # The launcher is gone (the kernel reparents, then signals): end now, as without this handler. A
            # multi-threaded launcher signals once per exiting thread; the last signal finds the default restored.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if not self.signum:
            self.signum = signum
        for sig in self.previous:   # a second signal ends the process at once
            signal.signal(sig, signal.SIG_DFL)
        who = f"rank {self.rank}: " if self.world_size > 1 else ""
        # os.write: a print here could re-enter a print the signal interrupted
        os.write(2, f"{who}received {signal.Signals(signum).name}: saving after the current optimizer step "
                    f"(another signal exits at once)\n".encode())

    # ---- the decision --------------------------------------------------------------------------------------
    def attach(self, guard) -> None:
        """Carry this rank's signal in the guard's per-step all_reduce; `requested` is set from its result."""
        reduce = guard.reduce
        flag = torch.zeros((), device=guard.bad.device)

        def reduce_with_stop(loss, scalars):
            if self.signum:
                flag.fill_(1.0)   # fill_ from a Python number: no host sync on a GPU
            bad, vals = reduce(loss, [*scalars, flag])
            self.requested = vals.pop() > 0
            return bad, vals

        guard.reduce = reduce_with_stop

    def agreed_signal(self) -> int:
        """The largest signal number received on any rank (0: none); collective."""
        return int(all_reduce_max(torch.tensor([float(self.signum)])).item())

    def exit(self, step: int, ckpt_path: str, is_main: bool) -> StopRun:
        """Collective, once the checkpoint is complete: the StopRun every rank raises, with the same signal on
        every rank. Tears the process group down: one left alive at interpreter exit can abort the process
        (gloo's threads), which would replace the exit code."""
        stop = StopRun(self.agreed_signal(), step, ckpt_path)
        if is_main:
            print(f"received {stop.signal_name} at step {step}: saved {ckpt_path}; exiting for requeue", flush=True)
        if dist.is_available() and dist.is_initialized():
            barrier()
            dist.destroy_process_group()
        return stop
