"""Where UNIC's inputs come from: the data layer's shards (features in memory, or images) for training,
mining and evaluation. Everything here is a thin adapter over dist_cluster.data."""
from __future__ import annotations

import numpy as np
import torch

from dist_cluster.methods.unic.data import FeatureRows, ImageRows, PairLoader
from dist_cluster.methods.unic.pairs import NEG, POS, LabelledSets, gcd_split


def _feature_norm(train: torch.Tensor, kind: str):
    """none | zscore (per-dimension statistics of the training split; constant dimensions left centred) | l2."""
    if kind == "none":
        return lambda x: x
    if kind == "l2":
        return lambda x: torch.nn.functional.normalize(x, dim=1)
    if kind == "zscore":
        mean, std = train.mean(0), train.std(0)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        return lambda x: (x - mean) / std
    raise ValueError(f"method.feature_norm must be none, zscore or l2, got {kind!r}")


class UnicInputs:
    def __init__(self, cfg):
        from dist_cluster import data
        self.cfg, self.m = cfg, cfg.method
        self.manifests = data.prepare(cfg.data)
        self._train = self._eval = None

    # ------------------------------------------------------------ feature sets (head only)
    def train_arrays(self):
        """(features, labels, index) of the training split, rows sorted by global index."""
        if self._train is None:
            from dist_cluster.data import load_feature_arrays
            f, y, i = load_feature_arrays(self.manifests["train"], limit=self.cfg.data.train_samples)
            order = torch.argsort(i)
            f = f[order]
            self._norm = _feature_norm(f, self.m.feature_norm)
            self._train = (self._norm(f), y[order], i[order])
        return self._train

    def eval_arrays(self):
        if self._eval is None:
            from dist_cluster.data import load_feature_arrays
            f, y, i = load_feature_arrays(self.manifests["eval"], limit=self.cfg.data.eval_samples)
            self.train_arrays()
            self._eval = (self._norm(f), y, i)
        return self._eval

    def feature_dim(self) -> int:
        from dist_cluster.data.dataset import open_manifest
        dim = open_manifest(self.manifests["train"]).raw.get("feature_dim") if self.m.input == "features" else None
        return int(dim) if dim else int(self.train_arrays()[0].shape[1])

    def class_names(self):
        from dist_cluster.data.dataset import open_manifest
        return open_manifest(self.manifests["train"]).raw.get("class_names") or None

    # ------------------------------------------------------------ training stream
    def native_size(self, split: str = "train") -> int:
        from dist_cluster.data.dataset import open_manifest
        image = open_manifest(self.manifests[split]).image or {}
        return int(image.get("size", [0])[0])

    def transform(self, name: str):
        """"scan": SCAN's ImageNet augmentation (SPEC U7-12) through timm; other names: the data layer's."""
        from dist_cluster.data import transform_from_config
        d = self.cfg.data
        if name != "scan":
            return transform_from_config(d, name, self.native_size())
        from timm.data import create_transform

        from dist_cluster.data.transforms import default_mean_std
        mean, std = default_mean_std(d.in_chans)
        size = d.image_size or self.native_size()
        return create_transform((d.in_chans, size, size), is_training=True, scale=tuple(d.scale), hflip=0.5,
                                color_jitter=(0.4, 0.4, 0.4, 0.1), color_jitter_prob=0.8, grayscale_prob=0.2,
                                interpolation=d.interpolation, mean=tuple(d.mean or mean), std=tuple(d.std or std))

    def train_loader(self, ctx, pairs):
        d, env, seed = self.cfg.data, ctx.env, self.cfg.seed
        if self.m.input == "features":
            from dist_cluster.data import TensorLoader
            f, y, i = self.train_arrays()
            anchors = TensorLoader(f, y, d.batch_size, seed, env.rank, env.world_size, index=i)
            return PairLoader(anchors, pairs, FeatureRows(f, i))
        from dist_cluster.data import RandomAccessDataset, build_train_loader
        from dist_cluster.data.sampling import mix_seed
        tf = self.transform(self.m.train_transform)
        anchors = build_train_loader(d, self.manifests["train"], seed=seed, rank=env.rank,
                                     world_size=env.world_size, transform=tf)
        roles = {role: RandomAccessDataset(self.manifests["train"], tf, seed=mix_seed(seed, stream),
                                           in_chans=d.in_chans, limit=d.train_samples)
                 for role, stream in (("pos", POS), ("neg", NEG))}
        return PairLoader(anchors, pairs, ImageRows(roles, d.num_workers))

    # ------------------------------------------------------------ mining and evaluation passes
    def _local_batches(self, ctx, split: str):
        """This rank's share of a split, every sample once across ranks: (index, input, label) batches."""
        env, d = ctx.env, self.cfg.data
        if self.m.input == "features":
            f, y, i = self.train_arrays() if split == "train" else self.eval_arrays()
            rows = torch.arange(env.rank, len(f), env.world_size)
            for s in range(0, len(rows), d.eval_batch_size):
                r = rows[s:s + d.eval_batch_size]
                yield i[r], f[r], y[r]
            return
        from dist_cluster.data import build_eval_loader
        loader = build_eval_loader(d, self.manifests[split], rank=env.rank, world_size=env.world_size,
                                   transform=self.transform(self.m.eval_transform))
        for batch in loader:
            yield batch["index"], batch["image"], batch["label"]

    @torch.no_grad()
    def local_embeddings(self, ctx, embed, dtype, dim: int, split: str):
        """This rank's (index, embed(input), label) over its share of a split (every sample once across ranks)."""
        idx, emb, lab = [], [], []
        for i, x, y in self._local_batches(ctx, split):
            idx.append(i.long())
            emb.append(embed(x.to(ctx.device, dtype)).float().cpu())
            lab.append(y.long())
        return (torch.cat(idx) if idx else torch.zeros(0, dtype=torch.long),
                torch.cat(emb) if emb else torch.zeros(0, dim),
                torch.cat(lab) if lab else torch.zeros(0, dtype=torch.long))

    def labelled_sets(self, labels: np.ndarray, m, seed: int) -> LabelledSets:
        labels = np.asarray(labels)
        return LabelledSets.build(labels, gcd_split(labels, m.old_classes, m.labelled_fraction, seed))
