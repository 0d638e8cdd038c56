"""PICI (SPEC P1-P8): MAE pre-training, then MAE + instance/cluster contrast, then boosting with the
cross-level interaction, as three engine stages.

What each stage computes follows from its loss weights: the decoder runs only where `pisd` is weighted, the
heads only where `ins`, `clu` or `cli` is. Pseudo-labels (k-means per view, at the boost stage's start) live in
a persistent buffer indexed by global sample index, and so does each boost epoch's Hungarian mapping, so a run
resumed inside the boost stage continues with exactly the labels and matching it had.
"""
from __future__ import annotations

import dataclasses

import torch

from dist_cluster.clustering import kmeans
from dist_cluster.distributed import all_gather_varlen, rank, world_size
from dist_cluster.eval import cluster_metrics
from dist_cluster.eval.passes import index_ordered_pass
from dist_cluster.methods.base import Method, Stage, check_clusters
from dist_cluster.methods.pici.boost import FEATURE_MODES, epoch_matching, pseudo_labels, two_view_pass
from dist_cluster.methods.pici.config import PICIConfig
from dist_cluster.models.vit_mae import PICINet
from dist_cluster.objectives.contrastive import cluster_loss_parts, instance_loss
from dist_cluster.objectives.cross_level import CE_MODES, cli_loss, match_global_batch

__all__ = ["PICI", "PICIConfig"]


class PICI(Method):
    def __init__(self, cfg):
        super().__init__()
        self.cfg, m = cfg, cfg.method
        if not cfg.data.image_size:
            raise ValueError("PICI needs data.image_size (the ViT's input size, e.g. 224, or 28 for Fashion-MNIST)")
        for key, allowed in (("match_scope", ("epoch", "batch")), ("eval_split", ("train", "eval")),
                             ("kmeans_backend", ("torch", "sklearn")), ("cli_ce", CE_MODES),
                             ("pl_features", FEATURE_MODES), ("entropy_form", ("cc", "paper"))):
            if getattr(m, key) not in allowed:
                raise ValueError(f"method.{key} must be one of {allowed}, got {getattr(m, key)!r}")
        self.net = PICINet(m.num_clusters, m.instance_dim, m.head_hidden, img_size=cfg.data.image_size,
                           patch_size=m.patch_size, in_chans=cfg.data.in_chans, embed_dim=m.embed_dim, depth=m.depth,
                           num_heads=m.num_heads, decoder_embed_dim=m.decoder_embed_dim,
                           decoder_depth=m.decoder_depth, decoder_num_heads=m.decoder_num_heads,
                           mlp_ratio=m.mlp_ratio, norm_pix_loss=m.norm_pix_loss, pos_embed=m.pos_embed)
        # (views, N) k-means labels by global index (-1 = not computed); sized in build_loaders
        self.register_buffer("pseudo", torch.full((2, 0), -1, dtype=torch.long))
        self.register_buffer("mapping", torch.arange(m.num_clusters).repeat(2, 1))   # k-means id → head id
        self.register_buffer("mapping_epoch", torch.tensor(-1))
        self._heads_cache = None        # (global_step, [c_a, c_b]) of the last no-grad pass
        self.best_acc = float("nan")    # the best evaluation's ACC so far: picking it needs labels (SPEC P7-9)
        self.last_eval: dict = {}

    # --- contract with the engine ---------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        m = self.cfg.method
        stages = [
            Stage("pretrain", m.pretrain_epochs, ("encoder", "decoder"), {"pisd": 1, "ins": 0, "clu": 0, "cli": 0}),
            Stage("train", m.train_epochs, ("encoder", "decoder", "instance_head", "cluster_head"),
                  {"pisd": 1, "ins": 1, "clu": 1, "cli": 0}),
            Stage("boost", m.boost_epochs, ("encoder", "instance_head", "cluster_head"),
                  {"pisd": 0, "ins": 1, "clu": 1, "cli": 1}),
        ]
        return [s for s in stages if s.epochs > 0]

    def param_groups(self):
        return self.net.param_groups()

    def no_weight_decay(self) -> set[str]:
        return {"net.mae.cls_token", "net.mae.mask_token", "net.mae.pos_embed", "net.mae.decoder_pos_embed"}

    def export_module(self):
        return self.net

    def build_loaders(self, ctx):
        from dist_cluster.data import build
        from dist_cluster.data.prepare import prepare
        cfg, m, env = self.cfg, self.cfg.method, ctx.env
        paths = prepare(cfg.data)
        n = build.resolve_manifest(paths["train"], cfg.data.num_samples).total
        n = min(n, cfg.data.train_samples) if cfg.data.train_samples else n
        check_clusters(m.num_clusters, n, "method.num_clusters")
        train = build.build_train_loader(cfg.data, paths["train"], seed=cfg.seed, rank=env.rank,
                                         world_size=env.world_size, views=m.views)
        if self.pseudo.shape[1] != n:
            self.pseudo = torch.full((2, n), -1, dtype=torch.long, device=self.pseudo.device)
        train_as_eval = dataclasses.replace(cfg.data, eval_samples=cfg.data.train_samples,
                                            eval_batch_size=m.pl_batch_size or cfg.data.eval_batch_size)
        self.pass_loader = build.build_eval_loader(train_as_eval, paths["train"], rank=env.rank,
                                                   world_size=env.world_size, views=m.views)
        self.transductive = m.eval_split == "train"
        if self.transductive:
            self.eval_loader = build.build_eval_loader(train_as_eval, paths["train"], rank=env.rank,
                                                       world_size=env.world_size)
        else:
            self.eval_loader = build.build_eval_loader(cfg.data, paths["eval"], rank=env.rank,
                                                       world_size=env.world_size)
        return train

    # --- training step --------------------------------------------------------------------------------------
    def forward(self, batch: dict, stage: Stage) -> dict[str, torch.Tensor]:
        m = self.cfg.method
        va, vb = batch["views"][:2]
        decode = stage.weight("pisd") != 0
        heads = any(stage.weight(t) != 0 for t in ("ins", "clu", "cli"))
        oa = self.net(va, m.mask_ratio, decode=decode, heads=heads)
        ob = self.net(vb, m.mask_ratio, decode=decode, heads=heads)
        out: dict[str, torch.Tensor] = {}
        if decode:
            rec = self.net.mae.reconstruction_loss
            out["loss/pisd"] = 0.5 * (rec(va, oa["pred"], oa["mask"]) + rec(vb, ob["pred"], ob["mask"]))
        if stage.weight("ins") != 0:
            out["loss/ins"] = instance_loss(oa["z"], ob["z"], m.tau_instance)
        if stage.weight("clu") != 0:
            parts = cluster_loss_parts(oa["c"], ob["c"], m.tau_cluster, m.entropy_form)
            out["loss/clu"] = parts["contrast"] + parts["entropy"]
            out["clu/contrast"], out["clu/entropy_penalty"] = parts["contrast"].detach(), parts["entropy"].detach()
            out["clu/marginal_entropy"] = parts["marginal_entropy"]
        if stage.weight("cli") != 0:
            targets = self._cli_targets(batch["index"], oa["c"], ob["c"])
            out["loss/cli"] = cli_loss(oa["c"], ob["c"], targets[0], targets[1], m.cli_ce)
            agree = [(c.argmax(1) == t).float().mean() for c, t in zip((oa["c"], ob["c"]), targets)]
            out["cli/batch_agreement"] = 0.5 * (agree[0] + agree[1]).detach()
        return out

    def _cli_targets(self, index: torch.Tensor, c_a: torch.Tensor, c_b: torch.Tensor) -> list[torch.Tensor]:
        p = self.pseudo[:, index.to(self.pseudo.device)]
        # checked on the device (an `if` would wait for it): raises here on the CPU, a device-side assert on CUDA
        torch._assert_async((p >= 0).all(), "boost step without pseudo-labels for this batch (on_stage_start "
                            "did not run?)")
        if self.cfg.method.match_scope == "batch":
            return [match_global_batch(p[k], c)[p[k]] for k, c in enumerate((c_a, c_b))]
        return [self.mapping[k][p[k]] for k in range(2)]

    # --- boosting: pseudo-labels at the stage start, matching at each epoch start -----------------------------
    def on_stage_start(self, stage: Stage, ctx, resumed: bool) -> None:
        if stage.weight("cli") == 0:
            return
        if self.pseudo.numel() and bool((self.pseudo >= 0).all()):
            return    # resumed inside the boost stage: keep the labels it was trained with
        m = self.cfg.method
        res = self._two_view_pass(ctx)
        if not torch.equal(res["index"], torch.arange(self.pseudo.shape[1])):
            raise RuntimeError("the pseudo-label pass did not cover every training index exactly once")
        labels = pseudo_labels([res["z_a"], res["z_b"]], m.num_clusters, self._kmeans, m.pl_features,
                               self.cfg.data.batch_size)
        self.pseudo.copy_(labels.to(self.pseudo.device))
        self._heads_cache = (ctx.global_step, [res["c_a"], res["c_b"]])
        from sklearn.metrics import normalized_mutual_info_score as nmi
        ctx.log({"cli/kmeans_nmi_views": float(nmi(labels[0].numpy(), labels[1].numpy())), "stage": stage.name},
                kind="boost")

    def _kmeans(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Labels of all N rows (identical on every rank): dist_cluster.clustering.kmeans over the rows split
        into contiguous shards, one per rank (backend "sklearn": gathered to rank 0, the reference path)."""
        m, n, w, r = self.cfg.method, x.shape[0], world_size(), rank()
        res = kmeans(x[n * r // w:n * (r + 1) // w], k, n_init=m.kmeans_n_init, max_iter=m.kmeans_max_iter,
                     seed=self.cfg.seed, backend=m.kmeans_backend)
        return all_gather_varlen(res.labels.to(x.device)).cpu()   # gathered on the compute device

    def _two_view_pass(self, ctx) -> dict[str, torch.Tensor]:
        was_training = self.training
        self.eval()
        try:
            dtype = next(self.net.parameters()).dtype
            return two_view_pass(self.net, self.pass_loader, self.cfg.method.pl_mask_ratio, ctx.device, dtype)
        finally:
            self.train(was_training)

    def on_epoch_start(self, epoch: int, ctx) -> None:
        stage = ctx.stage
        if stage is None or stage.weight("cli") == 0 or self.cfg.method.match_scope != "epoch":
            return
        if int(self.mapping_epoch) == epoch:
            return    # resumed mid-epoch: this epoch's matching is in the checkpoint
        if self._heads_cache is not None and self._heads_cache[0] == ctx.global_step:
            heads = self._heads_cache[1]
        else:
            res = self._two_view_pass(ctx)
            heads = [res["c_a"], res["c_b"]]
        mapping, stats = epoch_matching(self.pseudo.cpu(), heads, self.cfg.method.num_clusters)
        self.mapping.copy_(mapping.to(self.mapping.device))
        self.mapping_epoch.fill_(epoch)
        self._heads_cache = None
        ctx.log(stats | {"epoch": epoch, "stage": stage.name}, kind="boost")

    # --- evaluation -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float]:
        m = self.cfg.method
        res = self._eval_pass(ctx, 0.0)
        pred, y, c = res["c"].argmax(1), res["label"], res["c"]
        counts = torch.bincount(pred, minlength=m.num_clusters).double()
        hard = counts / counts.sum()
        soft = c.double().mean(0)
        out = {"clusters_nonempty": int((counts > 0).sum()),
               "pred_entropy": float(-(hard * hard.clamp_min(1e-12).log()).sum()),
               "marginal_entropy": float(-(soft * soft.clamp_min(1e-12).log()).sum())}
        if bool((y >= 0).all()):
            out |= cluster_metrics(y, pred, m.nmi_average)
            self.best_acc = out["acc"] if self.best_acc != self.best_acc else max(self.best_acc, out["acc"])
            # an oracle, not a result: which evaluation was best is known only from the labels
            out["diag/acc_oracle_best_eval"] = self.best_acc
        if self.transductive and self.pseudo.numel() and bool((self.pseudo >= 0).all()):
            # agreement of the head with the boost stage's k-means pseudo-labels (view a), not with the classes
            from sklearn.metrics import normalized_mutual_info_score as nmi
            out["diag/nmi_head_vs_pseudo_labels"] = float(nmi(self.pseudo[0, res["index"]].cpu().numpy(),
                                                              pred.numpy()))
        if m.eval_reference_mask > 0 and bool((y >= 0).all()):
            ref = self._eval_pass(ctx, m.eval_reference_mask)
            out |= {f"diag/ref_masked_{k}": v for k, v in cluster_metrics(y, ref["c"].argmax(1), m.nmi_average).items()}
        self.last_eval = {"label": y, "pred": pred, "z": res["z"], "epoch": ctx.epoch, "index": res["index"], "c": c}
        return out

    def _eval_pass(self, ctx, mask_ratio: float) -> dict[str, torch.Tensor]:
        dtype = next(self.net.parameters()).dtype

        def step(batch):
            out = self.net(batch["image"].to(device=ctx.device, dtype=dtype), mask_ratio)
            return {"label": batch["label"].long(), "z": out["z"].float(), "c": out["c"].float()}
        return index_ordered_pass(self.eval_loader, step)

    def write_figures(self, ctx) -> list[str]:
        from dist_cluster.methods.pici.figures import write_all
        return write_all(self, ctx)
