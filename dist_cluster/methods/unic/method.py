"""UNIC (SPEC "UNIC"): neighbour mining once, then a cluster head (and the backbone's last block) trained with
positive / negative neighbour BCE and the batch-marginal entropy; clustering and GCD modes.

Two inputs: `method.input=features` trains the head on frozen feature shards (the mining space is the
features themselves); `method.input=images` fine-tunes the backbone's last block on image shards, mining
with the frozen initial backbone and the evaluation transform.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from dist_cluster.methods.base import Method, Stage, check_clusters
from dist_cluster.methods.unic.model import build_backbone, build_head
from dist_cluster.objectives.neighbor_losses import unic_losses


class UnicMethod(Method):
    def __init__(self, cfg):
        super().__init__()
        self.cfg, m = cfg, cfg.method
        if m.mode not in ("cluster", "gcd"):
            raise ValueError(f"method.mode must be 'cluster' or 'gcd', got {m.mode!r}")
        if m.input not in ("features", "images"):
            raise ValueError(f"method.input must be 'features' or 'images', got {m.input!r}")
        if not 0 < m.tau1 < m.tau2:
            raise ValueError(f"need 0 < tau1 < tau2, got tau1={m.tau1}, tau2={m.tau2}")
        self._data = None                 # manifests / in-memory arrays, built lazily
        self.backbone = build_backbone(m) if m.input == "images" else None
        self.feature_dim = self.backbone.embed_dim if self.backbone is not None else self._feature_dim()
        self.head = build_head(self.feature_dim, m)
        self.mined = None                 # unic_mining.Mined, set in on_stage_start
        self.labelled = None              # unic_pairs.LabelledSets in GCD mode
        self._last_eval = None            # (y_true, y_pred) of the last evaluation, for the confusion figure

    # ---------------------------------------------------------------- data
    def data(self):
        from dist_cluster.methods.unic.inputs import UnicInputs
        if self._data is None:
            self._data = UnicInputs(self.cfg)
        return self._data

    def _feature_dim(self) -> int:
        return self.data().feature_dim()

    # ---------------------------------------------------------------- engine contract
    def stages(self) -> list[Stage]:
        m = self.cfg.method
        weights = {"pos": m.lambda_pos, "neg": m.lambda_neg, "ent": m.lambda_ent}
        return [Stage("unic", m.epochs, train=("all",), loss_weights=weights)]

    def param_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        groups = {"head": list(self.head.parameters())}
        if self.backbone is not None and self.backbone.trainable_parameters():
            groups["backbone"] = self.backbone.trainable_parameters()
        return groups

    def build_loaders(self, ctx):
        loader = self.data().train_loader(ctx, self._pairs)
        anchors = loader.anchors
        n = anchors.plan.n if hasattr(anchors, "plan") else anchors.m.total
        check_clusters(self.cfg.method.num_clusters, n, "method.num_clusters")
        return loader

    def _pairs(self, epoch: int, idx: np.ndarray):
        from dist_cluster.methods.unic.pairs import positives
        if self.mined is None:
            raise RuntimeError("UNIC pairs requested before mining (on_stage_start) ran")
        m, seed = self.cfg.method, self.cfg.seed
        pos = positives(seed, epoch, idx, self.mined.neighbours, self.mined.clean, self.labelled,
                        m.labelled_positives)
        neg = self.mined.negatives(seed, epoch, idx, self.labelled, m) if m.lambda_neg else None
        return pos, neg

    def embed(self, batch_inputs: torch.Tensor) -> torch.Tensor:
        return self.backbone(batch_inputs) if self.backbone is not None else batch_inputs

    def forward(self, batch: dict, stage: Stage) -> dict[str, torch.Tensor]:
        key = "image" if self.backbone is not None else "feature"
        parts = [batch[key], batch[f"pos_{key}"]] + ([batch[f"neg_{key}"]] if f"neg_{key}" in batch else [])
        logits = self.head(self.embed(torch.cat(parts)))
        probs = torch.softmax(logits.float(), dim=1).chunk(len(parts))
        terms = unic_losses(probs[0], probs[1], probs[2] if len(parts) == 3 else None, self.cfg.method.eps)
        with torch.no_grad():   # static size (bincount sizes its output from the max: a host sync on CUDA)
            used = torch.zeros(probs[0].shape[1], device=logits.device).index_fill_(0, probs[0].argmax(1), 1.0).sum()
        return {f"loss/{k}": v for k, v in terms.items()} | {"entropy": -terms["ent"].detach(),
                                                              "clusters_used_batch": used}

    # ---------------------------------------------------------------- mining
    def on_stage_start(self, stage: Stage, ctx, resumed: bool) -> None:
        """Mine once with the frozen initial backbone (or reload the run's mining file) before training."""
        from dist_cluster.methods.unic import mining
        if self.mined is not None:
            return
        m = self.cfg.method
        if mining.exists(ctx.run_dir, self.cfg):
            self.mined = mining.load(ctx.run_dir, self.cfg)
        elif resumed:
            raise RuntimeError(f"{mining.mining_path(ctx.run_dir, self.cfg)} is missing and this run resumes "
                               "mid-training: mining again would use the fine-tuned backbone, not the initial one. "
                               "Restore the file or use a new run directory.")
        else:
            from dist_cluster.logging.progress import timed
            index, x, labels = self._embeddings(ctx, "train")
            with timed(f"mining neighbours (τ₁={m.tau1} positives, negatives ranked ≥ τ₂={m.tau2})", ctx.env.is_main):
                self.mined = mining.mine(ctx.run_dir, self.cfg, x, index, labels)
        if m.mode == "gcd":
            self.labelled = self.data().labelled_sets(self.mined.labels, m, self.cfg.seed)
        rec = self.mined.log_record()
        if ctx.logger is not None:   # every statistic to metrics.jsonl; the console gets one short line
            ctx.logger.log({f"mining/{k}": v for k, v in rec.items()}, ctx.global_step, kind="mining", echo=False)
        if ctx.env.is_main:
            print(mining.summary_line(rec), flush=True)

    @torch.no_grad()
    def _embeddings(self, ctx, split: str):
        """This rank's (index, embedding, label) of a split in eval mode (mining: the frozen initial backbone)."""
        was_training = self.training
        self.eval()
        try:
            dtype = next(self.head.parameters()).dtype
            return self.data().local_embeddings(ctx, self.embed, dtype, self.feature_dim, split)
        finally:
            self.train(was_training)

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float]:
        from dist_cluster.eval import cluster_metrics, gather_in_index_order, gcd_accuracy
        from dist_cluster.methods.unic.evaluation import gcd_accuracy_v1, kmeans_metrics
        m = self.cfg.method
        idx, emb, y = gather_in_index_order(*self._embeddings(ctx, "train" if m.mode == "gcd" else "eval"))
        dtype = next(self.head.parameters()).dtype
        logits = torch.cat([self.head(e.to(ctx.device, dtype)).float().cpu() for e in emb.split(4096)]) \
            if len(emb) else torch.zeros(0, m.num_clusters)
        pred = logits.argmax(1)
        self.last_outputs = {"index": idx, "logits": logits, "embedding": emb}   # for clusters.csv
        if m.mode == "gcd":        # transductive: D_e = D_U, the unlabelled training images
            keep = ~torch.from_numpy(self.labelled.mask[idx.numpy()])
            idx, emb, y, pred = idx[keep], emb[keep], y[keep], pred[keep]
        y_np, p_np = y.numpy(), pred.cpu().numpy()
        labelled = bool((y_np >= 0).all())     # −1 = unknown: label-free figures only
        out = cluster_metrics(y_np, p_np, m.nmi_average) if labelled else {}
        out["clusters_used"] = float(len(np.unique(p_np)))
        if m.mode == "gcd":
            out |= {f"{k}": v for k, v in gcd_accuracy(y_np, p_np, m.old_classes).items()}
            out |= {f"v1_{k}": v for k, v in gcd_accuracy_v1(y_np, p_np, m.old_classes).items()}
        if m.eval_kmeans:
            out |= {f"kmeans_{k}": v for k, v in kmeans_metrics(emb.float(), y_np, m.num_clusters,
                                                                  self.cfg.seed).items()}
        self._last_eval = (y_np, p_np) if labelled else None
        return out

    def write_figures(self, ctx) -> list[str]:
        from dist_cluster.methods.unic.figures import confusion_figure, purity_figure
        paths = []
        c = self.mined.purity_curve(self.cfg.method.purity_ks) if self.mined is not None else {}
        if c:
            paths.append(purity_figure(os.path.join(ctx.figures_dir, "neighbour_purity.png"), c["ks"],
                                       c["before"], c["after"], c["kept_fraction"]))
        if self._last_eval is not None:
            y, p = self._last_eval
            paths.append(confusion_figure(os.path.join(ctx.figures_dir, "confusion.png"), y, p,
                                          self.data().class_names()))
        return paths

    def export_module(self) -> torch.nn.Module:
        return self
