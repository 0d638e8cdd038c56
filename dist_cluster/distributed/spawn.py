"""Run a function on W ranks (real torch.distributed processes on this machine) and collect the results."""
from __future__ import annotations

import gc
import os
import random
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dist_cluster.distributed.collectives import barrier


def free_port() -> int:
    """A port free now, below the OS's ephemeral range. A port handed out by bind(0) and released can be given
    to another process's outgoing connection before the rendezvous binds it; ports below the range never are."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            first = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768
    rng = random.SystemRandom()
    for _ in range(64):
        port = rng.randrange(max(1024, first - 12000), first)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir, threads, backend, fn, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(threads)
    # a file rendezvous: no port to lose to another process between choosing and binding it
    dist.init_process_group(backend, init_method=f"file://{os.path.join(out_dir, 'rendezvous')}", rank=rank,
                            world_size=world)
    try:
        result = fn(rank, world, *args)
        torch.save(result, os.path.join(out_dir, f"{rank}.pt"))
        del result
        # gloo work still referenced (e.g. from a cycle in an autograd graph) keeps the group alive into
        # interpreter exit, where its threads abort the process (as in dist_cluster.distributed.process_group.shutdown)
        gc.collect()
        barrier()
    finally:
        dist.destroy_process_group()


def run_world(fn, world_size: int = 2, *args, threads: int = 1, backend: str = "gloo") -> list:
    """fn(rank, world_size, *args) on every rank of a group; returns [result of rank 0, 1, ...].

    fn must be importable (module level) because ranks are spawned processes; each rank runs torch with
    `threads` threads. `backend` may be a per-device string such as "cpu:gloo,cuda:gloo" (what GPU runs use;
    it runs on CPU tensors here too).
    """
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_worker, args=(world_size, free_port(), out_dir, threads, backend, fn, args),
                           nprocs=world_size, join=True, start_method="spawn")
        return [torch.load(os.path.join(out_dir, f"{r}.pt"), weights_only=False) for r in range(world_size)]
