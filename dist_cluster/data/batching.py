"""Transformed images written straight into their batch.

Stacking per-sample tensors costs a full copy of the batch, and ToTensor and Normalize each allocate an
image-sized tensor per sample; on a CPU-bound loader that is a fifth of the time. A transform whose pipeline
(nested Composes flattened) reads `... → ToTensor → Normalize → tensor ops` is split here: the stages before
ToTensor run per sample as usual, and the result is converted and normalised inside its row of one batch
tensor by the same float operations in the same order (uint8 → float, ÷255, −mean, ÷std), after which the
tensor ops (e.g. random erasing) run on that row. The batch is bitwise the one stacking gives. In a DataLoader
worker the batch is allocated in shared memory, as `default_collate` does, so it crosses to the main process
without another copy. Other transforms are applied per sample and stacked.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info
from torchvision import transforms as T

from dist_cluster.data.sampling import seeded_rng

UINT8_MODES = ("L", "RGB")


def _flat(transform) -> list:
    if isinstance(transform, T.Compose):
        return [s for t in transform.transforms for s in _flat(t)]
    return [transform]


def _is_to_tensor(t) -> bool:
    from timm.data.transforms import MaybeToTensor
    return isinstance(t, (T.ToTensor, MaybeToTensor))


class SplitView:
    """One view's transform as (image stages, ToTensor, Normalize, tensor stages)."""

    def __init__(self, image_stages: list, to_tensor, normalize: T.Normalize, tensor_stages: list):
        self.image_stages, self.to_tensor, self.tensor_stages = image_stages, to_tensor, tensor_stages
        self.mean = torch.as_tensor(normalize.mean, dtype=torch.get_default_dtype()).view(-1, 1, 1)
        self.std = torch.as_tensor(normalize.std, dtype=torch.get_default_dtype()).view(-1, 1, 1)
        if (self.std == 0).any():
            raise ValueError(f"std evaluated to zero after conversion to {self.std.dtype}, leading to division "
                             "by zero.")

    @classmethod
    def of(cls, transform) -> SplitView | None:
        stages = _flat(transform)
        at = next((i for i, t in enumerate(stages) if _is_to_tensor(t)), None)
        if at is None or at + 1 >= len(stages) or type(stages[at + 1]) is not T.Normalize:
            return None
        if stages[at + 1].inplace or any(_is_to_tensor(t) for t in stages[at + 2:]):
            return None
        return cls(stages[:at], stages[at], stages[at + 1], stages[at + 2:])

    def image(self, img):
        for t in self.image_stages:
            img = t(img)
        return img

    def shape(self, pic) -> tuple[int, ...]:
        if isinstance(pic, torch.Tensor):
            return tuple(pic.shape)
        return (len(pic.getbands()), pic.size[1], pic.size[0])

    def write(self, pic, row: torch.Tensor) -> None:
        """ToTensor and Normalize of `pic` into `row`, then the tensor stages on it."""
        if not isinstance(pic, torch.Tensor) and pic.mode in UINT8_MODES:
            a = torch.from_numpy(np.array(pic, dtype=np.uint8))
            row.copy_(a.view(pic.size[1], pic.size[0], -1).permute(2, 0, 1))
            row.div_(255)
        else:
            row.copy_(self.to_tensor(pic))
        row.sub_(self.mean).div_(self.std)
        for t in self.tensor_stages:
            out = t(row)
            if out is not row:
                row.copy_(out)


def split_views(transform) -> list[SplitView] | None:
    """Split every view of `transform` (a MultiView's, or the one), or None when one of them does not split."""
    views = getattr(transform, "views", None)
    views = [SplitView.of(t) for t in (views if views is not None else [transform])]
    return None if any(v is None for v in views) else views


def batch_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float tensor, in shared memory inside a DataLoader worker."""
    dtype = torch.get_default_dtype()
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = int(np.prod(shape))
    storage = torch.UntypedStorage._new_shared(numel * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def pil_to_float(img) -> torch.Tensor:
    """An image as a float tensor in [0, 1] (the sample made when there is no transform)."""
    from torchvision.transforms.functional import pil_to_tensor
    return pil_to_tensor(img).float().div_(255.0)


def transform_batch(images: Sequence, seeds: Sequence[int],
                    transform: Callable | None) -> torch.Tensor | list[torch.Tensor]:
    """Every image through `transform` (or `pil_to_float`) under its seed, as one batch (or one per view)."""
    views = split_views(transform) if transform is not None else None
    if views is None:
        outs = []
        for img, seed in zip(images, seeds):
            with seeded_rng(seed):
                x = transform(img) if transform is not None else pil_to_float(img)
            outs.append(list(x) if isinstance(x, tuple) else x)
        return default_collate(outs)
    batches: list[torch.Tensor | None] = [None] * len(views)
    for p, (img, seed) in enumerate(zip(images, seeds)):
        with seeded_rng(seed):
            for v, view in enumerate(views):
                pic = view.image(img)
                shape = view.shape(pic)
                if batches[v] is None:
                    batches[v] = batch_tensor((len(images), *shape))
                elif tuple(batches[v].shape[1:]) != shape:
                    raise ValueError(f"the transform made a {shape} sample in a batch of {tuple(batches[v].shape)}"
                                     "; give the transform a fixed output size")
                view.write(pic, batches[v][p])
    return batches if getattr(transform, "views", None) is not None else batches[0]
