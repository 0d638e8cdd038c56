"""The non-finite guard: one decision per optimizer step, before `engine.step()`, covering loss and gradients.

Gradient hooks fold each gradient into a flag on the compute device as backward produces it (before any ZeRO
partitioning or reduction, so it works at every stage); the loss adds its own. The flag is a float that stays
0 while everything is finite: each tensor adds 0 × its min and max (NaN as soon as one value is NaN or ±inf),
one reduction pass without a mask as large as the gradient (an `isfinite(g).all()` costs 14× more on CPU).
At the accumulation boundary the flag travels in the same all_reduce as the step's logged scalars: one
collective and one host sync per optimizer step.
"""
from __future__ import annotations

import torch

from dist_cluster.distributed import all_reduce_sum, world_size
from dist_cluster.errors import UserError


class NonFiniteLossError(UserError, RuntimeError):
    pass


class FiniteGuard:
    def __init__(self, params, device: torch.device):
        self.bad = torch.zeros((), device=device)
        self.handles = [p.register_hook(self._on_grad) for p in params if p.requires_grad]

    def _on_grad(self, grad: torch.Tensor):
        if grad.numel():
            lo, hi = torch.aminmax(grad)
            self.bad.add_(lo.mul(0)).add_(hi.mul(0))
        return grad

    def check_loss(self, loss: torch.Tensor) -> None:
        self.bad.add_(loss.detach().float().mul(0))

    def reduce(self, loss: torch.Tensor, scalars: list[torch.Tensor]) -> tuple[bool, list[float]]:
        """(any rank non-finite since the last call, [loss, *scalars] averaged over ranks); resets the flag."""
        vec = torch.stack([(~torch.isfinite(self.bad)).float(), loss.detach().float().reshape(())]
                          + [s.detach().float().reshape(()) for s in scalars])
        all_reduce_sum(vec)
        vals = vec.tolist()   # the step's one host sync
        self.bad.zero_()
        return vals[0] > 0, [v / world_size() for v in vals[1:]]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def params_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter (this rank's ZeRO-3 partition where sharded) is finite, agreed by all ranks."""
    tensors = [getattr(p, "ds_tensor", None) if getattr(p, "ds_tensor", None) is not None else p
               for p in module.parameters()]
    device = tensors[0].device if tensors else torch.device("cpu")
    bad = torch.zeros(1, device=device)
    for t in tensors:   # device-side accumulation: one host sync for the whole model
        if t.numel():
            bad += (~torch.isfinite(t).all()).to(device)
    return all_reduce_sum(bad).item() == 0
