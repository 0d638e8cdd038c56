"""Row-wise top-k with a total order: larger score first, then smaller index.

`torch.topk` picks arbitrarily among equal scores, so on its own the neighbours of a point with duplicates
would depend on how the data are sharded. These helpers make the result a function of (score, index) only.
`RunningTopK` keeps, per query, the best k seen so far: every database block contributes its own top-k
(selected through the maxima of column groups, no sort of the tile), merged with the running lists.
"""
from __future__ import annotations

import torch

GROUP = 16      # columns per group in the selection over group maxima


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
    m = scores.shape[1]
    if m % GROUP == 0 and m >= 4 * k * GROUP:
        return _select_grouped(scores, idx, k, ties)
    if not ties:
        v, p = scores.topk(k, dim=1, sorted=False)
        return v, idx.gather(1, p)
    return _select_lex(scores, idx, k)


def _select_lex(scores: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    v, p = scores.topk(k + 1, dim=1, sorted=True)
    tie = v[:, k - 1] == v[:, k]        # the (k+1)-th equals the k-th: which ones make the cut needs the ids
    v, i = v[:, :k], idx.gather(1, p[:, :k])
    if bool(tie.any()):
        rows = tie.nonzero().squeeze(1)
        sv, si = lexsort_rows(scores[rows], idx[rows])
        v[rows], i[rows] = sv[:, :k], si[:, :k]
    return v, i


def _select_grouped(scores: torch.Tensor, idx: torch.Tensor, k: int, ties: bool) -> tuple[torch.Tensor,
                                                                                          torch.Tensor]:
    """`_select` through column groups: column j's group is {j + t·m/GROUP}, and the maxima of the groups
    are an element-wise max of GROUP contiguous slices (vectorised), so the selections see m/GROUP and
    k·GROUP columns instead of m.

    The k groups with the largest maxima hold k distinct scores ≥ t, their smallest maximum, so every pair
    of the top k (and every pair tied with the k-th) scores ≥ t; when the next group's maximum is below t,
    no other group holds one, and the selection among the k groups' columns is exact. Rows where it equals
    t are selected over all columns."""
    n, m = scores.shape
    w = m // GROUP
    gmax = scores.view(n, GROUP, w).amax(1)
    gv, g = gmax.topk(k + ties, dim=1, sorted=ties)
    cols = (g[:, :k].unsqueeze(2) + torch.arange(0, m, w, device=g.device)).reshape(n, -1)
    s, i = scores.gather(1, cols), idx.gather(1, cols)
    if not ties:
        v, p = s.topk(k, dim=1, sorted=False)
        return v, i.gather(1, p)
    v, i = _select_lex(s, i, k)
    tie = gv[:, k - 1] == gv[:, k]
    if bool(tie.any()):
        rows = tie.nonzero().squeeze(1)
        v[rows], i[rows] = _select_lex(scores[rows], idx[rows], k)
    return v, i


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
