"""One fused Lloyd pass over centred rows: nearest centre, its distance, per-cluster sums and counts in one sweep.

The rows are centred into one copy once (in the working dtype, as scikit-learn's copy_x; rows that need neither
centring nor conversion are used as they are), in the same sweep that computes their squared norms (their sum
gives the tolerance). Narrow rows get a column of ones, so that one GEMM with [−2c, ‖c‖²] gives the scores.
Each pass then reads every chunk once: the GEMM `‖c‖² − 2·x·cᵀ` into a reused tile (‖x‖² left out of the
argmin, as scikit-learn does) and the row-wise min/argmin written in place. On CPU the per-cluster sums are
running sums that follow the labels: the first pass after `reset` (or after a pass without sums) adds every
chunk's rows (`index_add_` in the data's dtype, flushed into float64 after every chunk; float64 rows added
directly when a chunk has fewer rows than centres); later passes move only the rows whose label changed, in
float64, from their old cluster's sum to the new one's (after the first iterations, 0.3–16% of the rows on
Fashion-MNIST: a pass is one read of the data instead of two). The ones column's sums are the counts (a
bincount otherwise); changed labels are counted per chunk.

The device path (the default on CUDA; `path="device"` forces it on CPU tensors, which is how it is tested)
keeps every step on the device: one GEMM per tile (an addmm, whose ‖c‖² cuBLASLt can add in its epilogue),
`torch.min` for the label and its score, counts by `index_add_` (a `bincount` would read its maximum back to
the host), the tile's sums in the data's dtype flushed into float64; no step of a pass waits for the host.

On CPU the chunks go to `workers` Python threads that each run torch single-threaded (torch releases the GIL
inside its kernels), like scikit-learn's one OpenMP region per iteration. With no per-operation thread
barriers, a busy machine slows a pass down in proportion instead of stalling every small operation. Chunk
boundaries are fixed by `chunk`; each worker keeps its own float64 accumulator, added in worker order, so
only float64 rounding depends on the number of workers.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from dist_cluster import cpu_gemm, hugepages
from dist_cluster.clustering.chunks import AUGMENT_BELOW, cache_chunk, default_chunk
from dist_cluster.precision import exact_float32


def work_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


PATHS = ("auto", "cpu", "device")


def _assign(s: torch.Tensor, labels: torch.Tensor, mins: torch.Tensor, cpu: bool) -> None:
    """labels ← the first argmin of each row of s, mins ← its minimum, in place. On CPU numpy's argmin is
    about twice as fast as torch's min(dim)."""
    if not cpu:
        torch.min(s, 1, out=(mins, labels))
        return
    s.numpy().argmin(1, out=labels.numpy())
    torch.gather(s, 1, labels[:, None], out=mins[:, None])


class LloydPass:
    """Centred rows, their norms and the pass buffers; use as a context manager (it owns a thread pool)."""

    def __init__(self, x: torch.Tensor, k: int, chunk: int | None = None, workers: int | None = None,
                 mu: torch.Tensor | None = None, path: str = "auto"):
        n, d = x.shape
        self.k, dev = k, x.device
        if path not in PATHS or (path == "cpu" and dev.type != "cpu"):
            raise ValueError(f"path must be one of {PATHS} ('cpu' for CPU tensors only), got {path!r}")
        self.chunk = max(1, chunk or default_chunk(n, k, dev))
        self.bounds = [(a, min(a + self.chunk, n)) for a in range(0, n, self.chunk)]
        self.cpu = dev.type == "cpu" and path != "device"
        self.workers = max(1, min(workers or torch.get_num_threads(), len(self.bounds))) if self.cpu else 1
        self.augment = d < AUGMENT_BELOW and self.cpu
        borrow = mu is None and x.is_contiguous() and x.dtype == work_dtype(x) and not self.augment
        if self.augment:            # [x − mu, 1]; self.x is the view without the ones
            self.xa = hugepages.empty((n, d + 1), work_dtype(x), dev).fill_(1)
            self.x = self.xa[:, :d]
        else:
            self.x = x if borrow else hugepages.empty((n, d), work_dtype(x), dev)   # x − mu, contiguous
        self.x_sq = torch.empty(n, dtype=torch.float64, device=dev)
        self.labels = torch.full((n,), -1, dtype=torch.long, device=dev)
        self.min_part = torch.empty(n, dtype=self.x.dtype, device=dev)
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        self._running = None        # CPU: each worker's float64 sums of its rows by their current labels
        shift = mu.to(self.x) if mu is not None else None

        step = cache_chunk(n, d, dev)

        def first_sweep(a, b, w):
            for a, e in ((a, min(a + step, b)) for a in range(a, b, step)):     # norms of rows still in the cache
                xb = self.x[a:e]
                if shift is not None:
                    torch.sub(x[a:e], shift, out=xb)
                elif not borrow:
                    xb.copy_(x[a:e])
                torch.linalg.vector_norm(xb, dim=1, out=self.min_part[a:e])
                self.x_sq[a:e] = self.min_part[a:e].square()

        self._map(first_sweep)
        self.total_sq = float(self.x_sq.sum())      # Σ ‖x − mu‖², n·d times the mean per-feature variance

    def __enter__(self) -> "LloydPass":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def _map(self, fn) -> None:
        """fn(a, b, worker) for every chunk; worker w takes a contiguous run of chunks."""
        if self._pool is None:
            for a, b in self.bounds:
                fn(a, b, 0)
            return
        nb = len(self.bounds)
        runs = [self.bounds[nb * w // self.workers:nb * (w + 1) // self.workers] for w in range(self.workers)]

        def job(w):
            torch.set_num_threads(1)
            for a, b in runs[w]:
                fn(a, b, w)

        outer = torch.get_num_threads()     # the workers' setting also reaches MKL's global one: restore it
        try:
            list(self._pool.map(job, range(self.workers)))
        finally:
            torch.set_num_threads(outer)

    def reset(self) -> None:
        """Forget the labels (all −1) and the running sums that follow them: the next pass starts afresh."""
        self.labels.fill_(-1)
        self._running = None

    @exact_float32()
    def run(self, c: torch.Tensor, with_sums: bool) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Assign every row to its nearest centre of c (k, d).

        Returns the float64 (k, d) sums of each cluster's rows (None unless asked), the float64 (k,) counts,
        and how many labels differ from the previous pass (all of them on the first).
        """
        c = c.to(self.x.dtype).contiguous()
        c_sq = (c * c).sum(1)
        # scores ‖c‖² − 2·x·c as x·wᵀ (+ bias): doubling and negation are exact, so either form rounds alike
        cw = torch.cat([c * -2, c_sq[:, None]], 1) if self.augment else c * -2
        onednn = self.cpu and cpu_gemm.takes_onednn(self.x, cw)
        k, d = c.shape
        dev, w_all = self.x.device, range(self.workers)
        direct = self.x.dtype == torch.float64 or self.chunk < k
        rows = self.xa if self.augment else self.x      # contiguous rows (index_add_ is slow on strided ones)
        width = rows.shape[1]
        # CPU: the last pass's sums follow its labels; only the rows whose label changed are read again
        moved = self.cpu and with_sums and self._running is not None and self._running[0].shape == (k, width)
        acc = [self.x.new_empty((k, width)) for _ in w_all] if with_sums and not moved else None
        if moved:
            totals = self._running
        elif with_sums:
            totals = [torch.zeros((k, width), dtype=torch.float64, device=dev) for _ in w_all]
        self._running = None            # until this pass has finished: an interrupted one leaves nothing to trust
        # with a ones column, its sums are the counts
        count_sums = with_sums and self.augment and not direct
        counts = [torch.zeros(k, dtype=torch.long, device=dev) for _ in w_all]
        changed = [0] * self.workers
        before = None if self.cpu else self.labels.clone()
        # reused score tiles: a fresh one per chunk is a large allocation whose pages are faulted in every time
        # (oneDNN returns its own, which the allocator reuses)
        tiles = [None if onednn else self.x.new_empty((self.chunk, k)) for _ in w_all]
        ones = None if self.cpu else torch.ones(self.chunk, dtype=torch.long, device=dev)

        def chunk(a, b, w):
            out, i = (None if onednn else tiles[w][:b - a]), self.labels[a:b]
            if self.cpu:        # numpy: a threaded torch op here would leave OpenMP threads spinning beside the workers
                was = i.numpy().copy()
            if onednn:
                s = cpu_gemm.linear(self.xa[a:b] if self.augment else self.x[a:b], cw, None if self.augment else c_sq)
            else:
                s = (torch.mm(self.xa[a:b], cw.T, out=out) if self.augment
                     else torch.addmm(c_sq, self.x[a:b], c.T, alpha=-2, out=out))
            _assign(s, i, self.min_part[a:b], self.cpu)
            if self.cpu:
                diff = np.flatnonzero(i.numpy() != was)
                changed[w] += len(diff)
            if ones is not None:
                counts[w].index_add_(0, i, ones[:b - a])
            elif not count_sums:
                counts[w] += torch.bincount(i, minlength=k)
            if not with_sums:
                return
            if moved:                  # each moved row leaves its old cluster's sum for its new one
                if len(diff):
                    src, at = torch.from_numpy(was[diff]), torch.from_numpy(diff + a)
                    part = rows.index_select(0, at).double()
                    totals[w].index_add_(0, self.labels.index_select(0, at), part)
                    left = src >= 0
                    totals[w].index_add_(0, src[left], part[left], alpha=-1)
            elif direct:               # fewer rows than centres: adding float64 rows beats flushing k × d
                totals[w].index_add_(0, i, rows[a:b].double())
            else:                      # a chunk's sums in the data's dtype, accumulated in float64
                totals[w].add_(acc[w].zero_().index_add_(0, i, rows[a:b]))

        self._map(chunk)
        self._running = totals if with_sums and self.cpu else None
        if self.cpu:
            changed = torch.tensor([float(sum(changed))], dtype=torch.float64)
        else:
            changed = (self.labels != before).sum().double().reshape(1)
        total = sum(totals[1:], totals[0].clone()) if with_sums else None
        n_in = total[:, d] if count_sums else sum(counts[1:], counts[0]).double()
        return (total[:, :d] if with_sums else None), n_in, changed

    def sq_dist(self) -> torch.Tensor:
        """Squared distance (float64) of every row to the centre of its last assignment."""
        return (self.min_part.double() + self.x_sq).clamp_min(0)
