"""What of the GPU path can be checked without a GPU: the process group asked for, collectives' devices, batches."""
import ast
import os
import sys
from unittest import mock

import pytest
import torch
from dist_util_fns import collectives_on_two_ranks
from dist_utils import run_world

from dist_cluster.distributed import DistEnv
from dist_cluster.distributed import process_group as process_group
from dist_cluster.engine.device_data import device_batches, to_device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIVES = {"all_reduce", "all_gather", "all_gather_into_tensor", "broadcast", "barrier", "gather", "scatter",
               "reduce", "reduce_scatter", "reduce_scatter_tensor", "all_to_all", "all_to_all_single", "send",
               "recv", "isend", "irecv", "broadcast_object_list", "all_gather_object", "gather_object",
               "scatter_object_list", "monitored_barrier"}


def test_cuda_run_asks_deepspeed_for_a_group_serving_cpu_and_cuda(monkeypatch):
    import deepspeed
    seen = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: seen.setdefault("device", d))
    def init(dist_backend=None, timeout=None, **kw):
        seen.update(backend=dist_backend, timeout=timeout)
    monkeypatch.setattr(deepspeed, "init_distributed", init)
    monkeypatch.delenv("DIST_CLUSTER_BACKEND", raising=False)
    with mock.patch.dict(os.environ):
        device = process_group.init_distributed(DistEnv(rank=3, world_size=16, local_rank=3, local_world_size=8,
                                                 launcher="torchrun"), timeout_min=7)
    assert seen["backend"] == "cpu:gloo,cuda:nccl"
    assert seen["timeout"].total_seconds() == 7 * 60
    assert device == torch.device("cuda", 3) and seen["device"] == device
    assert torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False


def test_backend_choice(monkeypatch):
    monkeypatch.delenv("DIST_CLUSTER_BACKEND", raising=False)
    assert process_group.process_group_backend(cuda=False) == "gloo"
    assert process_group.process_group_backend(cuda=True) == "cpu:gloo,cuda:nccl"
    monkeypatch.setenv("DIST_CLUSTER_BACKEND", "cpu:gloo,cuda:gloo")   # several ranks on one GPU
    assert process_group.process_group_backend(cuda=True) == "cpu:gloo,cuda:gloo"


def _direct_collective_calls(path: str) -> list[str]:
    tree = ast.parse(open(path).read(), path)
    aliases = {"torch.distributed"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name == "torch.distributed" and a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            aliases |= {a.asname or a.name for a in node.names if a.name == "distributed"}
        elif isinstance(node, ast.ImportFrom) and node.module in ("torch.distributed",
                                                                   "torch.distributed.nn.functional"):
            bad = [a.name for a in node.names if a.name in COLLECTIVES]
            if bad:
                return [f"{path}:{node.lineno} imports {bad}"]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in COLLECTIVES:
            owner = ast.unparse(node.func.value)
            if owner in aliases:
                found.append(f"{path}:{node.lineno} {owner}.{node.func.attr}")
    return found


def test_every_collective_goes_through_distributed_collectives():
    """Tensor collectives live in collectives.py, object ones (pickled, device-free) in rank_zero.py."""
    allowed = {os.path.join(ROOT, "dist_cluster", "distributed", f) for f in ("collectives.py", "rank_zero.py")}
    found = []
    for top in ("dist_cluster", "slurm", "recipes", "tools"):
        for root, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                path = os.path.join(root, f)
                if f.endswith(".py") and path not in allowed:
                    found += _direct_collective_calls(path)
    assert not found, "collectives outside dist_cluster/distributed/{collectives,rank_zero}.py:\n" + "\n".join(found)
    objects = ("broadcast_object_list", "all_gather_object", "gather_object")
    tensors = [c for c in _direct_collective_calls(os.path.join(ROOT, "dist_cluster", "distributed", "rank_zero.py"))
               if not c.endswith(objects)]
    assert not tensors, tensors


def test_collectives_on_two_gloo_ranks_match_one_process():
    res = run_world(collectives_on_two_ranks, 2)
    for r, out in enumerate(res):
        assert out["sum"].tolist() == [3.0, 3.0] and out["max"].tolist() == [2.0]
        assert out["varlen"].tolist() == [0, 0, 1] and out["bcast"].tolist() == [7.0]
        assert out["async"].tolist() == [5.0, 5.0]
    assert [t.tolist() for t in res[0]["gathered"]] == [[0.0], [1.0]] and res[1]["gathered"] is None


def test_device_batches_on_cpu_equal_the_plain_cast():
    batches = [{"feature": torch.arange(6.).reshape(2, 3), "label": torch.tensor([1, 2]),
                "views": [torch.ones(2, 3, 4, 4)], "_skipped": torch.tensor(2)}]
    (out, skipped), = list(device_batches([dict(b) for b in batches], torch.device("cpu"), torch.bfloat16))
    assert skipped == 2 and "_skipped" not in out
    assert out["feature"].dtype == torch.bfloat16 and out["label"].dtype == torch.long
    assert out["views"][0].dtype == torch.bfloat16
    ref = to_device({k: v for k, v in batches[0].items() if k != "_skipped"}, torch.device("cpu"), torch.bfloat16)
    assert torch.equal(out["feature"], ref["feature"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a CPU-only machine gives")
def test_gpu_check_without_cuda_says_so_in_one_line():
    import subprocess
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gpu_check.py")], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "no CUDA device" in res.stderr and "Traceback" not in res.stderr
