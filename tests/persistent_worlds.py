"""Long-lived rank processes for run_world: one world per (world size, threads, backend), started on first use
and kept until this process exits. A spawned rank costs seconds (it re-imports torch and the test module), so a
world pays that once and then runs task after task, as PyTorch's MultiProcContinousTest does. Before each task
every rank puts back what a fresh rank process would have; a world whose task failed or timed out is torn down
(a rank may be stuck in a collective that another never joined), and the next call starts a new one."""
from __future__ import annotations

import atexit
import gc
import os
import queue
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dist_cluster.distributed.collectives import barrier
from dist_cluster.distributed.spawn import free_port


class RankError(RuntimeError):
    """A rank raised or died; its world was torn down."""


class _Fresh:
    """A rank's state as the process started (taken once its group exists), put back before each task."""

    def __init__(self, threads: int):
        # each process draws its own default seed; recorded, since a task that reseeds changes initial_seed()
        self.threads, self.seed = threads, torch.initial_seed()
        self.np, self.py = np.random.get_state(), random.getstate()
        self.dtype, self.grad = torch.get_default_dtype(), torch.is_grad_enabled()
        self.det = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        self.env, self.cwd = dict(os.environ), os.getcwd()
        self.handlers = {s: h for s in signal.valid_signals() if (h := signal.getsignal(s)) is not None}

    def restore(self) -> None:
        torch.manual_seed(self.seed)
        np.random.set_state(self.np)
        random.setstate(self.py)
        torch.set_default_dtype(self.dtype)
        torch.set_grad_enabled(self.grad)
        torch.use_deterministic_algorithms(self.det[0], warn_only=self.det[1])
        torch.set_num_threads(self.threads)
        for key in set(os.environ) - set(self.env):
            del os.environ[key]
        os.environ.update(self.env)
        os.chdir(self.cwd)
        for sig, handler in self.handlers.items():
            if signal.getsignal(sig) != handler:
                signal.signal(sig, handler)


def _next_task(tasks, parent: int):
    while True:
        try:
            return tasks.get(timeout=5)
        except queue.Empty:
            if os.getppid() != parent:   # the parent died without closing the world (e.g. killed)
                return None


def _serve(rank, world, threads, backend, workdir, tasks, results):
    # daemon for the parent (ended at its exit), not for the tasks: they may start worker pools
    mp.current_process().daemon = False
    parent = os.getppid()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    dist.init_process_group(backend, init_method=f"file://{os.path.join(workdir, 'rendezvous')}", rank=rank,
                            world_size=world)
    fresh = _Fresh(threads)
    while (task := _next_task(tasks, parent)) is not None:
        path, sys_path = task
        sys.path.extend(p for p in sys_path if p not in sys.path)   # where the task's module is found
        try:
            fn, args = torch.load(path, weights_only=False)
            fresh.restore()   # after the load: what a newly imported module draws does not shift the task's RNG
            torch.save(fn(rank, world, *args), os.path.join(workdir, f"{rank}.pt"))
            error = None
        except BaseException:
            error = traceback.format_exc()
        fn = args = None
        results.put((rank, error))
        if error is None:
            barrier()
    # gloo work still referenced from a cycle would keep the group alive into interpreter exit and abort it
    gc.collect()
    dist.destroy_process_group()


class _World:
    def __init__(self, size: int, threads: int, backend: str):
        self.dir = tempfile.mkdtemp(prefix="test-world-")
        ctx = mp.get_context("spawn")
        self.results, self.tasks = ctx.Queue(), [ctx.Queue() for _ in range(size)]
        self.procs = [ctx.Process(target=_serve, args=(r, size, threads, backend, self.dir, q, self.results),
                                  daemon=True) for r, q in enumerate(self.tasks)]
        for p in self.procs:
            p.start()

    def run(self, fn, args: tuple, timeout: float) -> list:
        path = os.path.join(self.dir, "task.pt")
        torch.save((fn, args), path)
        for q in self.tasks:
            q.put((path, list(sys.path)))
        pending, deadline = set(range(len(self.procs))), time.monotonic() + timeout
        while pending:
            try:
                rank, error = self.results.get(timeout=1.0)
            except queue.Empty:
                for r, p in enumerate(self.procs):
                    if p.exitcode is not None:
                        raise RankError(f"rank {r} exited with code {p.exitcode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ranks {sorted(pending)} gave no result in {timeout:g} s") from None
                continue
            if error is not None:
                raise RankError(f"rank {rank} failed:\n{error}")
            pending.discard(rank)
        return [torch.load(os.path.join(self.dir, f"{r}.pt"), weights_only=False) for r in range(len(self.procs))]

    def leave(self) -> None:
        for q in self.tasks:
            q.put(None)

    def close(self, wait: float) -> None:
        """Give the ranks `wait` seconds to end; then terminate, and kill what remains."""
        for p in self.procs:
            p.join(wait)
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        for q in (*self.tasks, self.results):
            q.cancel_join_thread()   # nothing left in them is wanted; don't block on a dead reader
            q.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_worlds: dict[tuple, _World] = {}


def run(fn, size: int, args: tuple, threads: int, backend: str, timeout: float) -> list:
    """fn(rank, size, *args) on every rank of the persistent world for (size, threads, backend)."""
    key = (size, threads, backend)
    if key not in _worlds:
        _worlds[key] = _World(*key)
    try:
        return _worlds[key].run(fn, args, timeout)
    except BaseException:
        _worlds.pop(key).close(wait=0)
        raise


@atexit.register
def _close_all() -> None:
    for world in _worlds.values():   # all leave at once: each rank's teardown takes a moment
        world.leave()
    while _worlds:
        _worlds.popitem()[1].close(wait=10)
