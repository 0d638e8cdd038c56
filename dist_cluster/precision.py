"""Float32 that is float32: results documented as exact (kNN lists, k-means) turn TF32 off around their GEMMs.

Training turns TF32 on for the whole process on CUDA (dist_cluster.launch); on Ampere and newer GPUs a TF32
matmul rounds its inputs to 10 mantissa bits, which moves kNN cuts and k-means assignments.
"""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def exact_float32():
    """fp32 matmuls and convolutions in full precision inside; the process's settings are restored on exit.
    Usable as a decorator."""
    mm, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    old = mm.allow_tf32, cudnn.allow_tf32, torch.get_float32_matmul_precision()
    mm.allow_tf32 = cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        mm.allow_tf32, cudnn.allow_tf32 = old[:2]
        torch.set_float32_matmul_precision(old[2])
