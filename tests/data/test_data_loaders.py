"""Training/eval loaders: equal batches per rank, (seed, epoch) shuffles, exact resume, worker independence."""
import pytest
import torch
from data_fixtures import N, cfg, epoch_indices, write_synthetic
from dist_utils import run_world

from dist_cluster.data import TensorLoader, build_eval_loader, build_train_loader, prepare, resume_batch
from dist_cluster.data.config import DataConfig

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


def _loader(path, rank=0, world=1, workers=0, batch=4, seed=7, views=None):
    return build_train_loader(cfg(batch_size=batch, num_workers=workers), path, seed=seed, rank=rank,
                              world_size=world, views=views)


def test_equal_batches_awkward_counts_2_ranks_3_workers(tmp_path):
    path = write_synthetic(str(tmp_path))  # 103 samples in 7 shards
    ranks = [_loader(path, r, 2, workers=3) for r in range(2)]
    assert [L.batches_per_epoch() for L in ranks] == [N // 8] * 2
    for epoch in (0, 1):
        got = [epoch_indices(L, epoch) for L in ranks]
        assert [len(g) for g in got] == [N // 8] * 2 and all(len(b) == 4 for g in got for b in g)
        flat = [i for g in got for b in g for i in b]
        assert len(set(flat)) == len(flat) == (N // 8) * 8  # disjoint; the remainder of 7 is dropped


def test_same_seed_same_order_next_epoch_differs(tmp_path):
    path = write_synthetic(str(tmp_path))
    a, b = _loader(path, seed=7), _loader(path, seed=7)
    assert epoch_indices(a, 0) == epoch_indices(b, 0)
    assert epoch_indices(a, 1) == epoch_indices(b, 1)
    assert epoch_indices(a, 0) != epoch_indices(a, 1)
    assert epoch_indices(a, 0) != epoch_indices(_loader(path, seed=8), 0)


def test_mid_epoch_resume_equals_uninterrupted_with_augmentations(tmp_path):
    path = write_synthetic(str(tmp_path))
    full = list(_loader(path, views="train").epoch(1))  # RandomResizedCrop, RandAugment, random erasing
    resumed = list(_loader(path, workers=2, views="train").epoch(1, start_batch=5))  # a fresh process's loader
    assert len(resumed) == len(full) - 5
    for x, y in zip(full[5:], resumed):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["image"], y["image"])
    again = list(_loader(path, views="train").epoch(2))
    assert not torch.equal(full[0]["image"], again[0]["image"])  # augmentations change with the epoch


def test_batches_do_not_depend_on_workers_multiview(tmp_path):
    path = write_synthetic(str(tmp_path))
    runs = [list(_loader(path, rank=1, world=2, workers=w, views="two_strong").epoch(3)) for w in (0, 3)]
    for x, y in zip(*runs):
        assert torch.equal(x["index"], y["index"])
        assert len(x["views"]) == 2 and all(torch.equal(u, v) for u, v in zip(x["views"], y["views"]))
        assert not torch.equal(x["views"][0], x["views"][1])


def test_loading_leaves_the_training_rng_alone(tmp_path):
    path = write_synthetic(str(tmp_path))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    list(_loader(path, views="train").epoch(0))
    assert torch.equal(torch.rand(3), expected)


def test_other_world_size_continues_from_the_global_offset(tmp_path):
    path = write_synthetic(str(tmp_path))
    two = [_loader(path, r, 2, batch=4) for r in range(2)]
    one = _loader(path, 0, 1, batch=8)
    start = resume_batch(samples_consumed=5 * 8, batch_size=8, world_size=1)
    cont = epoch_indices(one, 4, start)
    per_rank = [epoch_indices(L, 4, 5) for L in two]
    assert cont == [a + b for a, b in zip(*per_rank)]


def test_eval_loader_covers_every_sample_once_equal_batch_counts(tmp_path):
    path = write_synthetic(str(tmp_path))
    loaders = [build_eval_loader(cfg(batch_size=10, num_workers=2), path, rank=r, world_size=2) for r in range(2)]
    batches = [list(L) for L in loaders]
    assert len(batches[0]) == len(batches[1]) == len(loaders[0]) == 6
    idx = [torch.cat([b["index"] for b in bs]).tolist() for bs in batches]
    assert idx[0] == list(range(0, N, 2)) and idx[1] == list(range(1, N, 2)) + [N - 2]  # padded by a repeat
    assert sorted(set(idx[0]) | set(idx[1])) == list(range(N))


def test_tensor_loader_same_semantics():
    feats, labels = torch.randn(103, 5), torch.arange(103) % 10
    a = [TensorLoader(feats, labels, 4, 7, r, 2) for r in range(2)]
    assert a[0].batches_per_epoch() == 12
    b0 = list(a[0].epoch(0))
    assert all(torch.equal(b["feature"], feats[b["index"]]) and torch.equal(b["label"], labels[b["index"]])
               for b in b0)
    assert [b["index"].tolist() for b in a[0].epoch(0, 3)] == [b["index"].tolist() for b in b0[3:]]
    assert [b["index"].tolist() for b in b0] != [b["index"].tolist() for b in a[0].epoch(1)]
    full = [TensorLoader(feats, labels, 4, 7, r, 2, drop_last=False, index=torch.arange(103) + 1000)
            for r in range(2)]
    seen = [i for L in full for b in L.epoch(0) for i in b["index"].tolist()]
    assert full[0].batches_per_epoch() == 13 and len(seen) == 104 and set(seen) == set(range(1000, 1103))


def _ranks_prepare_and_load(rank, world, root):
    data = DataConfig(name="digits_pixels", root=root, batch_size=32)
    paths = prepare(data)  # both ranks at once: one writes under the lock, the other waits
    loader = build_train_loader(data, paths["train"], seed=1, rank=rank, world_size=world)
    import sys
    return paths, loader.batches_per_epoch(), epoch_indices(loader, 0), sorted(sys.modules)


def test_two_gloo_ranks_prepare_digits_and_load_disjoint_batches(tmp_path):
    out = run_world(_ranks_prepare_and_load, 2, str(tmp_path), fresh=True)   # fresh: sys.modules is checked
    assert "timm" not in out[0][3]  # feature sets do not pay for the image stack
    assert out[0][0] == out[1][0] and out[0][1] == out[1][1] == 1797 // 64
    flat = [i for _, _, batches, _ in out for b in batches for i in b]
    assert len(flat) == len(set(flat)) == 28 * 64
