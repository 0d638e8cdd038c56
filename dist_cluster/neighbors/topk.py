"""Row-wise top-k with a total order: larger score first, then smaller index.

`torch.topk` picks arbitrarily among equal scores, so on its own the neighbours of a point with duplicates
would depend on how the data are sharded. These helpers make the result a function of (score, index) only.
"""
from __future__ import annotations

import torch


def lexsort_rows(scores: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by score descending, ties by index ascending."""
    o = torch.argsort(idx, dim=1, stable=True)
    s, i = scores.gather(1, o), idx.gather(1, o)
    o = torch.argsort(s, dim=1, descending=True, stable=True)
    return s.gather(1, o), i.gather(1, o)


def topk_lex(scores: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best (score, index) pairs of each row in (score desc, index asc) order.

    idx: (n, m) or (m,) ids of the columns. Returns fewer than k columns only when a row has fewer than k.
    """
    if idx.dim() == 1:
        idx = idx.unsqueeze(0).expand_as(scores)
    m = scores.shape[1]
    if k >= m:
        return lexsort_rows(scores, idx)
    v, p = scores.topk(k + 1, dim=1)
    tie = v[:, k - 1] == v[:, k]        # the (k+1)-th equals the k-th: which ones make the cut needs the ids
    v, i = v[:, :k], idx.gather(1, p[:, :k])
    if bool(tie.any()):
        rows = tie.nonzero().squeeze(1)
        sv, si = lexsort_rows(scores[rows], idx[rows])
        v[rows], i[rows] = sv[:, :k], si[:, :k]
    return lexsort_rows(v, i)


def merge_topk(s1: torch.Tensor, i1: torch.Tensor, s2: torch.Tensor, i2: torch.Tensor,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of the union of two candidate lists (ids must not repeat across the two)."""
    return topk_lex(torch.cat([s1, s2], dim=1), torch.cat([i1, i2], dim=1), k)
