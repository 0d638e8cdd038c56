"""Counting the operations that make the host wait for the device (a diagnostic for training-step code).

On CUDA each of these blocks Python until the GPU has caught up, so the GPU idles while the host prepares
the next kernels: reading a value (`.item()`, `float(t)`, `int(t)`, `bool(t)`, a tensor in an `if`),
ops whose output size depends on the data (`nonzero`, boolean indexing, `masked_select`, `unique`,
`bincount`, `repeat_interleave` without `output_size`, a sparse matmul whose operand is not coalesced), error
checks read on the host (`torch.linalg.cholesky`, `inv`, `solve`: their `_ex` forms do not check),
`torch.equal`, copies to the host (`.cpu()`, `.tolist()`, `.numpy()`) and blocking copies from it
(`torch.tensor(x, device=...)`, `.to(device)` without `non_blocking`).

`HostSyncCounter` sees them as aten ops through a TorchDispatchMode, so it counts on any device. On the CPU
nothing waits: the count there is a proxy of what CUDA would sync on, computed from the same ops. What it
cannot see: copies between host and device on a CPU run (there are none: `.tolist()`, `.cpu()` or
`torch.tensor(x)` of CPU tensors copy nothing), syncs inside C++ kernels, and code that torch.compile traced.
Ops on host tensors during a torch optimizer's `step()` are not counted: its per-parameter step counts live on
the host on every device. `cuda_debug=True` also counts CUDA's own sync warnings
(`torch.cuda.set_sync_debug_mode("warn")`) as a cross-check on a GPU (`cuda_syncs`).
"""
from __future__ import annotations

import collections
import warnings

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostSyncCounter"]

aten = torch.ops.aten
_ALWAYS = {aten._local_scalar_dense, aten.is_nonzero, aten.nonzero, aten.bincount, aten.masked_select, aten.equal,
           aten._unique, aten._unique2, aten.unique_dim, aten.unique_consecutive, aten.unique_dim_consecutive,
           aten._linalg_check_errors, aten._coalesce}
_BOOL_INDEX = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}
_SPARSE_MM = {aten._sparse_addmm, aten._sparse_mm, aten.addmm, aten.mm, aten.bmm}


def _tensors(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (t for t in a if isinstance(t, torch.Tensor))


def _syncs(func, args, kwargs) -> bool:
    """Whether this op would make the host wait for a CUDA device."""
    packet = func.overloadpacket
    if packet in _ALWAYS:
        return True
    if packet in _BOOL_INDEX:
        return any(t is not None and t.dtype in (torch.bool, torch.uint8) for t in args[1])
    if packet is aten.linalg_cholesky_ex:
        return bool(kwargs.get("check_errors", args[2] if len(args) > 2 else False))
    if packet is aten.repeat_interleave:   # the forms with a repeats tensor size their output from its sum
        return func is not aten.repeat_interleave.self_int and kwargs.get("output_size") is None
    if packet in _SPARSE_MM:   # CUDA coalesces an uncoalesced sparse operand first
        return any(t.layout == torch.sparse_coo and not t.is_coalesced() for t in _tensors(args, kwargs))
    if packet in (aten.lift_fresh, aten.lift_fresh_copy):   # torch.tensor(data, device=...): a blocking copy
        return args[0].device.type != "cpu"
    if packet is aten._to_copy:   # to the host, or from it without non_blocking
        src, dst = args[0].device.type, torch.device(kwargs.get("device") or args[0].device).type
        return src != dst and (dst == "cpu" or not kwargs.get("non_blocking", False))
    if packet is aten.copy_:
        dst, src = args[0].device.type, args[1].device.type
        return src != dst and (dst == "cpu" or not (args[2] if len(args) > 2 else kwargs.get("non_blocking")))
    return False


class HostSyncCounter(TorchDispatchMode):
    """`with HostSyncCounter() as c: ...` → `c.total` host syncs, `c.counts` per aten op name.

    `cpu=False` counts only ops on non-CPU tensors (exact on a GPU, where host tensors' values are free).
    """

    def __init__(self, cpu: bool = True, cuda_debug: bool = False):
        super().__init__()
        self.cpu, self.cuda_debug = cpu, cuda_debug and torch.cuda.is_available()
        self.counts: collections.Counter = collections.Counter()
        self.cuda_syncs = 0
        self._in_optimizer = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _syncs(func, args, kwargs):
            copy = func.overloadpacket in (aten._to_copy, aten.copy_)   # between two devices, one not the host
            on_device = copy or any(t.device.type != "cpu" for t in _tensors(args, kwargs))
            if on_device or (self.cpu and not self._in_optimizer):
                self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **kwargs)

    def _pre_step(self, *_):
        self._in_optimizer += 1

    def _post_step(self, *_):
        self._in_optimizer -= 1

    def __enter__(self):
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
        self._hooks = [register_optimizer_step_pre_hook(self._pre_step),
                       register_optimizer_step_post_hook(self._post_step)]
        if self.cuda_debug:
            self._previous = torch.cuda.get_sync_debug_mode()
            self._caught = warnings.catch_warnings(record=True)
            self._records = self._caught.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            for h in self._hooks:
                h.remove()
            if self.cuda_debug:
                torch.cuda.set_sync_debug_mode(self._previous)
                self.cuda_syncs = sum("synchroniz" in str(w.message) for w in self._records)
                self._caught.__exit__(*exc)
