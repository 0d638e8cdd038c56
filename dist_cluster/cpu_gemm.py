"""The float32 GEMM of the exact CPU searches (kNN score tiles, k-means' Lloyd pass): oneDNN where torch has it.

torch's float32 `mm` on CPU calls MKL, which on AMD processors runs its AVX2 kernels; oneDNN (bundled with
torch, the library behind its bfloat16 matmuls and Inductor's CPU linear layers) picks its kernels from the
CPU's flags. On a 2-core AMD EPYC with AVX-512 (Zen 5), measured with `python -m dist_cluster.bench knn`'s
header rows: 4096×4096×768 MKL 187, oneDNN 366 GFLOP/s (numpy's OpenBLAS 248); k-means' 8192×100×33 tile
191 against 320. Both accumulate in float32; only the order of the additions differs. oneDNN's results do
not depend on the thread count or on which rows of a product are computed together (tested), so lists and
labels stay the same at any world size.

`DIST_CLUSTER_CPU_GEMM=blas` sends these GEMMs to torch.mm (MKL/OpenBLAS) instead; float64 and other dtypes,
CUDA tensors, and builds without oneDNN always use torch.mm.
"""
from __future__ import annotations

import functools
import os

import torch

BACKENDS = ("onednn", "blas")


@functools.lru_cache(maxsize=None)
def _onednn_op():
    try:
        op = torch.ops.mkldnn._linear_pointwise
        if not torch.backends.mkldnn.is_available():
            return None
        op(torch.ones(1, 1), torch.ones(1, 1), None, "none", [], "")
        return op
    except (AttributeError, RuntimeError, TypeError):     # an op this torch build lacks or calls otherwise
        return None


def backend() -> str:
    """The backend float32 CPU GEMMs take in this process ("onednn" or "blas")."""
    want = os.environ.get("DIST_CLUSTER_CPU_GEMM", "onednn")
    if want not in BACKENDS:
        raise ValueError(f"DIST_CLUSTER_CPU_GEMM must be one of {BACKENDS}, got {want!r}")
    return "onednn" if want == "onednn" and _onednn_op() is not None else "blas"


def takes_onednn(x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether x · wᵀ goes to oneDNN: float32 CPU tensors, with oneDNN chosen and available."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
            and backend() == "onednn")


def linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """x · wᵀ (+ bias, one value per row of w), float32 accumulation. `out` is used by the torch.mm path only
    (oneDNN returns a new tensor); callers use the returned tensor."""
    if takes_onednn(x, w):
        return _onednn_op()(x.contiguous(), w.contiguous(), bias, "none", [], "")
    if bias is None:
        return torch.mm(x, w.T, out=out) if out is not None else torch.mm(x, w.T)
    return torch.addmm(bias, x, w.T, out=out) if out is not None else torch.addmm(bias, x, w.T)
