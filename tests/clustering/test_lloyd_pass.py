"""The Lloyd pass's running sums: after the first pass only the rows whose label changed are read again, and the
sums still equal the per-cluster sums of the rows by their current labels."""
import pytest
import torch
from sklearn.datasets import make_blobs

from dist_cluster.clustering.lloyd_pass import LloydPass

torch.set_num_threads(1)


def exact_sums(x, labels, k):
    return torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, labels, x.double())


@pytest.mark.parametrize("dtype,d,workers", [(torch.float32, 7, 1), (torch.float32, 150, 3), (torch.float64, 7, 3)])
def test_running_sums_follow_the_labels(dtype, d, workers):
    """Width 7 takes the ones column (its sums are the counts), 150 the bias; float64 rows add directly."""
    x = torch.from_numpy(make_blobs(5000, centers=20, n_features=d, random_state=0)[0]).to(dtype)
    gen = torch.Generator().manual_seed(0)
    rtol = 1e-12 if dtype == torch.float64 else 1e-5     # float32 rows: the first pass sums chunks in float32
    with LloydPass(x, 20, chunk=256, workers=workers) as fused:
        moves = []
        for step in range(6):
            c = x[torch.randperm(len(x), generator=gen)[:20]] + 0.1 * step
            before = fused.labels.clone()
            if step == 3:                                 # a pass without sums: the next one starts afresh
                fused.run(c, False)
                continue
            if step == 5:
                fused.reset()
                assert bool((fused.labels == -1).all())
                before = fused.labels.clone()
            sums, counts, changed = fused.run(c, True)
            ref = exact_sums(x, fused.labels, 20)
            assert torch.allclose(sums, ref, rtol=rtol, atol=rtol * float(ref.abs().max()))
            assert torch.equal(counts, torch.bincount(fused.labels, minlength=20).double())
            assert int(changed) == int((fused.labels != before).sum())
            moves.append(int(changed))
            with LloydPass(x, 20, chunk=256, workers=workers) as fresh:
                again = fresh.run(c, True)
                assert torch.equal(fresh.labels, fused.labels) and torch.equal(again[1], counts)
    assert moves[0] == moves[-1] == len(x) and 0 < min(moves[1:3]) < len(x)


def test_unchanged_labels_leave_the_sums_as_they_were():
    x = torch.from_numpy(make_blobs(3000, centers=8, n_features=200, random_state=1)[0]).float()
    with LloydPass(x, 8, chunk=512, workers=2) as fused:
        first = fused.run(x[:8], True)
        second = fused.run(x[:8], True)
    assert int(second[2]) == 0 and torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_an_interrupted_pass_or_other_centres_count_start_the_sums_afresh():
    x = torch.from_numpy(make_blobs(2000, centers=6, n_features=5, random_state=2)[0]).float()
    with LloydPass(x, 6, chunk=256, workers=1) as fused:
        fused.run(x[:6], True)
        real, calls = torch.Tensor.index_add_, []

        def fail_once(t, *a, **kw):
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt
            return real(t, *a, **kw)
        torch.Tensor.index_add_ = fail_once
        try:
            with pytest.raises(KeyboardInterrupt):
                fused.run(x[10:16], True)       # stops after its first chunk's labels changed
        finally:
            torch.Tensor.index_add_ = real
        sums, counts, _ = fused.run(x[20:26], True)
        assert torch.allclose(sums, exact_sums(x, fused.labels, 6), rtol=1e-5, atol=1e-3)
        assert torch.equal(counts, torch.bincount(fused.labels, minlength=6).double())
        sums, counts, _ = fused.run(x[:4], True)                     # 4 centres now
        assert sums.shape == (4, 5) and torch.allclose(sums, exact_sums(x, fused.labels, 4), rtol=1e-5, atol=1e-3)
