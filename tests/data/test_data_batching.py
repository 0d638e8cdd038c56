"""Images transformed straight into their batch equal the per-sample transform stacked, bit for bit."""
import numpy as np
import pytest
import torch
from data_fixtures import cfg, write_synthetic
from PIL import Image
from torch.utils.data import DataLoader, default_collate
from torchvision import transforms as T

from dist_cluster.data import build_train_loader
from dist_cluster.data.batching import SplitView, batch_tensor, split_views, transform_batch
from dist_cluster.data.dataset import RandomAccessDataset, pil_to_float
from dist_cluster.data.sampling import seeded_rng
from dist_cluster.data.transforms import make_transform

torch.set_num_threads(1)


def _images(n: int, mode: str) -> list:
    rng = np.random.default_rng(3)
    shape = (37, 29) if mode == "L" else (37, 29, 3)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode) for _ in range(n)]


def _flat(x) -> torch.Tensor:
    return torch.cat([v.flatten() for v in x]) if isinstance(x, list) else x.flatten()


def _stacked(images, seeds, transform):
    outs = []
    for img, seed in zip(images, seeds):
        with seeded_rng(seed):
            outs.append(transform(img))
    return default_collate(outs)


@pytest.mark.parametrize("name,chans", [("train", 3), ("train", 1), ("strong", 3), ("two_strong", 3),
                                        ("weak_strong", 1), ("eval", 3), ("mae", 3)])
def test_in_place_batch_equals_stacked_samples(name, chans):
    tf = make_transform(name, 24, chans, re_prob=1.0)  # every sample erased: the tensor stage runs in place
    assert split_views(tf) is not None
    images, seeds = _images(6, "L" if chans == 1 else "RGB"), [11, 5, 7, 11, 0, 2 ** 40]
    got, want = transform_batch(images, seeds, tf), _stacked(images, seeds, tf)
    for g, w in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
        assert g.dtype == w.dtype and torch.equal(g, w)
    if name != "eval":  # the others are random: the seeds reach them
        other = transform_batch(images, [1] * 6, tf)
        assert not torch.equal(_flat(got), _flat(other))


def test_transforms_that_do_not_split_are_stacked_per_sample():
    mean = (0.5, 0.4, 0.3)
    for tf in (T.Compose([T.ToTensor()]), T.Compose([T.ToTensor(), T.Normalize(mean, mean, inplace=True)]),
               lambda img: T.functional.to_tensor(img) * 2):
        assert SplitView.of(tf) is None
        images = _images(3, "RGB")
        assert torch.equal(transform_batch(images, [1, 2, 3], tf),
                           _stacked(images, [1, 2, 3], tf))
    images = _images(2, "RGB")
    assert torch.equal(transform_batch(images, [0, 0], None),
                       torch.stack([pil_to_float(i) for i in images]))


def test_a_transform_of_varying_size_is_an_error():
    tf = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    images = [Image.new("L", (8, 8)), Image.new("L", (9, 8))]
    with pytest.raises(ValueError, match="fixed output size"):
        transform_batch(images, [0, 1], tf)


class _SharedInWorker(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        return torch.tensor(batch_tensor((2, 3)).is_shared())


def test_worker_batches_are_allocated_in_shared_memory():
    assert not batch_tensor((2, 3)).is_shared()
    assert bool(next(iter(DataLoader(_SharedInWorker(), batch_size=None, num_workers=1))))


def test_loader_batches_equal_per_sample_gets(tmp_path):
    path = write_synthetic(str(tmp_path / "shards"), n=24, spp=8)
    tf = make_transform("train", 12, 1, re_prob=0.5)
    loader = build_train_loader(cfg(batch_size=4, num_workers=1), path, seed=9, rank=0, world_size=1, transform=tf)
    ds = RandomAccessDataset(path, tf, seed=9, in_chans=1)
    for b in loader.epoch(2):
        want = torch.stack([ds.get(int(i), 2)["image"] for i in b["index"]])
        assert torch.equal(b["image"], want)
