"""Row-wise top-k with a total order: larger score first, then smaller index.

`torch.topk` picks arbitrarily among equal scores, so on its own the neighbours of a point with duplicates
would depend on how the data are sharded. These helpers make the result a function of (score, index) only.
`RunningTopK` keeps, per query, the best k seen so far: every database block contributes its own top-k
(one `topk` over the block's scores, no sort of the tile), merged with the running lists (2k columns).
"""
from __future__ import annotations

import torch


def lexsort_rows(scores: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by score descending, ties by index ascending."""
    o = torch.argsort(idx, dim=1, stable=True)
    s, i = scores.gather(1, o), idx.gather(1, o)
    o = torch.argsort(s, dim=1, descending=True, stable=True)
    return s.gather(1, o), i.gather(1, o)


def _select(scores: torch.Tensor, idx: torch.Tensor, k: int, ties: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best (score, index) pairs of each row, in no particular order (ties at the cut: smaller ids, or
    any of them with ties=False)."""
    if idx.dim() == 1:
        idx = idx.unsqueeze(0).expand_as(scores)
    if k >= scores.shape[1]:       # copies: callers reuse their score and id buffers
        return scores.clone(), idx.clone()
    if not ties:
        return _select_any(scores, idx, k)
    v, p = scores.topk(k + 1, dim=1, sorted=True)
    tie = v[:, k - 1] == v[:, k]        # the (k+1)-th equals the k-th: which ones make the cut needs the ids
    v, i = v[:, :k], idx.gather(1, p[:, :k])
    if bool(tie.any()):
        rows = tie.nonzero().squeeze(1)
        sv, si = lexsort_rows(scores[rows], idx[rows])
        v[rows], i[rows] = sv[:, :k], si[:, :k]
    return v, i


GROUP = 16


def _select_any(scores: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Some k best pairs of each row, ties at the cut broken any way.

    Column j's group is {j + t·m/GROUP}: the k best lie in the k groups with the largest maxima, and the
    maxima are an element-wise max of GROUP contiguous slices (vectorised), so the `topk`s see m/GROUP and
    k·GROUP columns instead of m."""
    n, m = scores.shape
    if m % GROUP or m < 4 * k * GROUP:
        v, p = scores.topk(k, dim=1, sorted=False)
        return v, idx.gather(1, p)
    w = m // GROUP
    g = scores.view(n, GROUP, w).amax(1).topk(k, dim=1, sorted=False).indices
    cols = (g.unsqueeze(2) + torch.arange(0, m, w, device=g.device)).reshape(n, -1)
    v, p = scores.gather(1, cols).topk(k, dim=1, sorted=False)
    return v, idx.gather(1, cols.gather(1, p))


def topk_lex(scores: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best (score, index) pairs of each row in (score desc, index asc) order.

    idx: (n, m) or (m,) ids of the columns. Returns fewer than k columns only when a row has fewer than k.
    """
    return lexsort_rows(*_select(scores, idx, k))


def merge_topk(s1: torch.Tensor, i1: torch.Tensor, s2: torch.Tensor, i2: torch.Tensor,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of the union of two candidate lists (ids must not repeat across the two)."""
    return topk_lex(torch.cat([s1, s2], dim=1), torch.cat([i1, i2], dim=1), k)


class RunningTopK:
    """Best k (score, id) pairs per row over blocks of columns; `result()` sorts them once at the end.

    Each block's own top-k is kept aside and merged with the running lists once `pending` blocks have
    accumulated (one selection over their columns instead of one per block). ties=False: which of the rows
    tied at the cut are kept is left to `torch.topk` (for candidate lists that are re-scored)."""

    def __init__(self, k: int, pending: int = 8, ties: bool = True):
        self.k, self.pending, self.ties = k, max(1, pending), ties
        self.scores: list[torch.Tensor] = []
        self.ids: list[torch.Tensor] = []

    def add(self, scores: torch.Tensor, ids: torch.Tensor) -> None:
        s, i = _select(scores, ids, self.k, self.ties)
        self.scores.append(s)
        self.ids.append(i)
        if len(self.scores) > self.pending:
            self._merge()

    def _merge(self) -> None:
        if len(self.scores) > 1:
            s, i = _select(torch.cat(self.scores, dim=1), torch.cat(self.ids, dim=1), self.k, self.ties)
            self.scores, self.ids = [s], [i]

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._merge()
        return lexsort_rows(self.scores[0], self.ids[0])
