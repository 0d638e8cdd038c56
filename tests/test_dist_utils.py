import torch
import torch.distributed as dist
from dist_utils import run_world


def _sum_ranks(rank, world):
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    return t.item()


def test_two_gloo_ranks_talk():
    assert run_world(_sum_ranks, 2) == [3.0, 3.0]
