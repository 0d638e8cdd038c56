"""Row-wise top-k with a total order: larger score first, then smaller index.

`torch.topk` picks arbitrarily among equal scores, so on its own the neighbours of a point with duplicates
would depend on how the data are sharded. These helpers make the result a function of (score, index) only.
`RunningTopK` keeps, per query, the best k seen so far: every database block contributes its own top-k
(selected through the maxima of column groups, no sort of the tile), merged with the running lists.
"""
from __future__ import annotations

import torch

GROUP = 16      # columns per group in the selection over group maxima
PAD_ID = torch.iinfo(torch.int64).max     # id of padding entries; with score -inf they sort last


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


def _merge_sparse(s: torch.Tensor, i: torch.Tensor, rows: torch.Tensor, cs: torch.Tensor, ci: torch.Tensor,
                  k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best k of each row of the (n, k) lists (s, i) and of candidates (row, score, id) = (rows, cs, ci),
    rows ascending: each touched row's candidates are laid beside its list in a (rows, k + most candidates)
    matrix, padded with (−inf, PAD) entries that sort last, and selected row-wise."""
    if not len(rows):
        return s, i
    touched, per_row = torch.unique_consecutive(rows, return_counts=True)
    n_t, width = len(touched), int(per_row.max())
    first = torch.cumsum(per_row, 0) - per_row
    slot = torch.repeat_interleave(torch.arange(n_t, device=s.device), per_row)
    col = k + torch.arange(len(rows), device=s.device) - first[slot]
    ms = torch.full((n_t, k + width), float("-inf"), dtype=s.dtype, device=s.device)
    mi = torch.full((n_t, k + width), PAD_ID, dtype=torch.long, device=s.device)
    ms[:, :k], mi[:, :k] = s[touched], i[touched]
    ms[slot, col], mi[slot, col] = cs, ci
    v, d = _select(ms, mi, k)
    s, i = s.clone(), i.clone()
    s[touched], i[touched] = v, d
    return s, i


class RunningTopK:
    """Best k (score, id) pairs per row over blocks of columns; `result()` sorts them once at the end.

    Until every row holds k finite scores, each block's own top-k is kept aside and merged with the running
    lists once `pending` blocks have accumulated (one selection over their columns instead of one per block).
    From then on the k-th score of each row is a floor that only rises: a block's column can enter only if it
    scores at least the floor, so only the groups (`_select_grouped`'s) whose maximum reaches it are read,
    and their few columns are merged with the lists at once. ties=False: which of the rows tied at the cut
    are kept may be left to `torch.topk` (for candidate lists that are re-scored)."""

    def __init__(self, k: int, pending: int = 8, ties: bool = True):
        self.k, self.pending, self.ties = k, max(1, pending), ties
        self.scores: list[torch.Tensor] = []
        self.ids: list[torch.Tensor] = []
        self.floor: torch.Tensor | None = None

    def add(self, scores: torch.Tensor, ids: torch.Tensor) -> None:
        n, m = scores.shape
        if self.floor is not None and ids.dim() == 1 and m % GROUP == 0:
            w = m // GROUP
            hit_r, hit_g = (scores.view(n, GROUP, w).amax(1) >= self.floor[:, None]).nonzero(as_tuple=True)
            if len(hit_r):
                cols = hit_g[:, None] + torch.arange(0, m, w, device=scores.device)
                cs = scores[hit_r[:, None], cols]
                good = cs >= self.floor[hit_r, None]
                rows = hit_r[:, None].expand_as(cols)[good]
                s, i = _merge_sparse(self.scores[0], self.ids[0], rows, cs[good], ids[cols][good], self.k)
                self._set(s, i)
            return
        s, i = _select(scores, ids, self.k, self.ties)
        self.scores.append(s)
        self.ids.append(i)
        if len(self.scores) > self.pending or len(self.scores) == 1:      # the first block sets the floor
            self._merge()

    def _set(self, s: torch.Tensor, i: torch.Tensor) -> None:
        self.scores, self.ids = [s], [i]
        if s.shape[1] == self.k:
            kth = s.amin(1)
            self.floor = kth if bool(torch.isfinite(kth).all()) else None

    def _merge(self) -> None:
        if len(self.scores) > 1:
            self._set(*_select(torch.cat(self.scores, dim=1), torch.cat(self.ids, dim=1), self.k, self.ties))
        elif self.scores and self.floor is None:
            self._set(self.scores[0], self.ids[0])

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._merge()
        return lexsort_rows(self.scores[0], self.ids[0])
