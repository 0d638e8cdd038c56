"""Streaming (pipe:/URL) shards: equal batches per rank, seeded epochs, exact resume, worker independence."""
import pytest
import torch
from data_fixtures import SPP, N, cfg, epoch_indices, write_synthetic
from test_data_corrupt import pipe_manifest

from dist_cluster.data import build_eval_loader, build_train_loader, resolve_manifest
from dist_cluster.data.streaming import StreamingLoader

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    return pipe_manifest(write_synthetic(str(tmp_path_factory.mktemp("shards"))))


def _loader(m, rank=0, world=2, workers=0, seed=7, views=None):
    return build_train_loader(cfg(num_workers=workers), m, seed=seed, rank=rank, world_size=world, views=views)


def test_equal_batches_and_rank_owns_its_shards(stream):
    loaders = [_loader(stream, r, 2, workers=3) for r in range(2)]
    assert all(isinstance(L, StreamingLoader) for L in loaders)
    got = [epoch_indices(L, 0) for L in loaders]
    assert [len(g) for g in got] == [N // 8] * 2 and all(len(b) == 4 for g in got for b in g)
    shards = [{i // SPP for b in g for i in b} for g in got]
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == 7  # shards dealt to ranks


def test_seeded_epochs_resume_and_worker_independence(stream):
    full = list(_loader(stream, 1, views="train").epoch(1))
    assert [b["index"].tolist() for b in full] == epoch_indices(_loader(stream, 1), 1)
    assert epoch_indices(_loader(stream, 1), 1) != epoch_indices(_loader(stream, 1), 2)
    resumed = list(_loader(stream, 1, workers=3, views="train").epoch(1, start_batch=5))
    assert len(resumed) == len(full) - 5
    for x, y in zip(full[5:], resumed):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["image"], y["image"])


def test_bare_pattern_needs_and_uses_num_samples(tmp_path):
    write_synthetic(str(tmp_path))
    pattern = f"pipe:cat {tmp_path}/train-{{000000..000006}}.tar"
    with pytest.raises(ValueError, match="num_samples"):
        resolve_manifest(pattern)
    m = resolve_manifest(pattern, num_samples=N)
    assert m.total == N and len(m.shards) == 7
    L = build_train_loader(cfg(num_samples=N), pattern, seed=0, rank=0, world_size=2)
    assert len(list(L.epoch(0))) == L.batches_per_epoch() == N // 8


def test_streaming_eval_covers_every_sample(stream):
    loaders = [build_eval_loader(cfg(batch_size=10), stream, rank=r, world_size=2) for r in range(2)]
    batches = [list(L) for L in loaders]
    assert len(batches[0]) == len(batches[1]) == len(loaders[0])
    idx = torch.cat([b["index"] for bs in batches for b in bs]).tolist()
    assert sorted(set(idx)) == list(range(N))
    assert all(b["label"].tolist() == [i % 10 for i in b["index"].tolist()] for bs in batches for b in bs)
