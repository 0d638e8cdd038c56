"""Matching cluster ids between two labelings (Hungarian, scipy via dist_cluster.eval) and renaming them."""
from __future__ import annotations

import numpy as np
import torch

from dist_cluster.eval import hungarian_match


def relabel(labels, mapping):
    """mapping[labels], keeping the input's kind (torch tensor on its device, or numpy array)."""
    if isinstance(labels, torch.Tensor):
        m = mapping if isinstance(mapping, torch.Tensor) else torch.as_tensor(np.asarray(mapping))
        return m.to(labels.device)[labels.long()]
    return np.asarray(mapping)[np.asarray(labels)]


def match_labels(source, target, k: int | None = None):
    """`source` renamed into `target`'s ids by the matching that maximises agreement (PICI's CLI step)."""
    return relabel(source, hungarian_match(source, target, k, k))
