"""Rank functions for the 2-rank collective tests (module level so spawned ranks can import them)."""
import torch

from dist_cluster import distributed as D


def collectives_on_two_ranks(rank, world):
    out = {"sum": D.all_reduce_sum(torch.tensor([1.0, 2.0]) + torch.tensor([rank * 1.0, -rank * 1.0]))}
    out["max"] = D.all_reduce_max(torch.tensor([float(rank + 1)]))
    out["varlen"] = D.all_gather_varlen(torch.arange(rank + 1))   # rank 0: [0]; rank 1: [0, 1]
    out["bcast"] = D.broadcast(torch.tensor([7.0 if rank == 0 else -1.0]))
    buf = torch.full((2,), 5.0) if rank == 1 else torch.zeros(2)
    handle = D.broadcast_async(buf, src=1)
    handle.wait()
    out["async"] = buf
    out["gathered"] = D.gather_to(torch.tensor([float(rank)]), dst=0)
    return out
