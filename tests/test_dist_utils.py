import os
import random
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from dist_utils import BACKENDS, run_world

from dist_cluster.distributed import all_gather_with_grad, all_reduce_sum_with_grad, device_backend


def _sum_ranks(rank, world):
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    return t.item()


def test_two_gloo_ranks_talk():
    assert run_world(_sum_ranks, 2) == [3.0, 3.0]


def _call_all_to_all(rank, world):
    dist.all_to_all([torch.zeros(1)] * world, [torch.ones(1)] * world)


def test_all_to_all_is_refused_in_test_worlds():
    with pytest.raises(Exception, match="all_to_all was called"):
        run_world(_call_all_to_all, 2)


def _gather_grads(rank, world, x, w):
    mine = x[rank * 3:(rank + 1) * 3].clone().requires_grad_(True)
    g = all_gather_with_grad(mine)
    s = all_reduce_sum_with_grad((mine * mine).sum())
    ((g * w).sum() + s).backward()       # the same loss on every rank
    return {"gathered": g.detach(), "grad": mine.grad, "backend": device_backend(x.device)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_gather_with_grad_is_w_times_the_one_process_gradient(backend):
    torch.manual_seed(0)
    x, w = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    res = run_world(_gather_grads, 2, x, w, backend=backend)
    one = x.clone().requires_grad_(True)
    ((one * w).sum() + (one * one).sum()).backward()
    for r, out in enumerate(res):
        assert out["backend"] == "gloo"
        assert torch.equal(out["gathered"], x)
        # each rank's shard gets the sum over ranks of the identical loss: W × the one-process gradient
        assert torch.allclose(out["grad"], 2 * one.grad[r * 3:(r + 1) * 3], rtol=0, atol=1e-12)


def _draw_then_disturb(rank, world):
    """What a fresh rank sees, then every kind of state a task could leave behind."""
    seen = (torch.rand(2), np.random.rand(), random.random(), torch.get_default_dtype(), torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(), os.environ.get("WORLD_TEST_LEAK"), torch.initial_seed())
    torch.manual_seed(123 + rank)
    np.random.seed(5)
    random.seed(5)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    os.environ["WORLD_TEST_LEAK"] = "1"
    dist.all_to_all = lambda *a, **k: None
    return seen


def _pid(rank, world):
    return os.getpid()


def _sleep(rank, world, seconds):
    time.sleep(seconds)


def test_a_task_sees_a_fresh_ranks_state_whatever_the_last_one_left():
    first, again = run_world(_draw_then_disturb, 2), run_world(_draw_then_disturb, 2)
    fresh = run_world(_draw_then_disturb, 2, fresh=True)   # each process draws its own seeds: compare the rest
    for a, b, f in zip(first, again, fresh):
        assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
        assert a[3:7] == f[3:7] == (torch.float32, 1, False, None)
    with pytest.raises(Exception, match="all_to_all was called"):   # the refusal is put back too
        run_world(_call_all_to_all, 2)


def test_a_world_lasts_until_a_call_fails_or_times_out():
    pids = run_world(_pid, 2)
    assert run_world(_pid, 2) == pids
    with pytest.raises(TimeoutError):
        run_world(_sleep, 2, 60, timeout=2)
    assert not set(run_world(_pid, 2)) & set(pids)
