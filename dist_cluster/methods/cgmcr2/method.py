"""CgMCR²: graph-cut guided maximal coding rate reduction on frozen pre-features (SPEC CgMCR²).

Pre-feature layer P (Linear+BN+ReLU, global-batch statistics) → feature head f → Z (unit rows) and cluster
head g → Π (Gumbel-softmax). Stages: warm-up (−R + L_Ncut, constant lr, T₁ epochs) and fine-tune
(−R + Rc + L_Ncut, cosine lr, T₂ epochs). Labels: argmax of g's logits ("CgMCR²") or spectral clustering
of Z ("CgMCR²-SC", at the end, beside KMeans and SpectralClustering on the same pre-features).
"""
from __future__ import annotations

import time

import torch
from torch import nn

from dist_cluster.distributed import main_only, world_size
from dist_cluster.eval import cluster_metrics, gather_in_index_order
from dist_cluster.methods.base import Method, Stage, check_clusters
from dist_cluster.methods.cgmcr2.config import CgMCR2Config
from dist_cluster.methods.cgmcr2.loss import CgMCR2Objective
from dist_cluster.models.heads import ClusterHead, FeatureHead, memberships, pre_feature_layer

__all__ = ["CgMCR2", "CgMCR2Config"]


class CgMCR2(Method):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        m: CgMCR2Config = cfg.method
        self.m = m
        self._arrays = None
        self.in_dim = m.in_dim   # derived from the data when 0; the config keeps what the user gave
        if self.in_dim <= 0:
            from dist_cluster.methods.cgmcr2.data import feature_dim
            self.in_dim = feature_dim(cfg.data)
        self.pre = pre_feature_layer(self.in_dim, m.hidden)
        self.feature_head = FeatureHead(m.hidden, m.feature_dim, m.n_hidden)
        self.cluster_head = ClusterHead(m.hidden, m.k, m.n_hidden)
        self.objective = CgMCR2Objective(m)
        self.last_eval: dict = {}      # rank 0: the latest evaluation's outputs (for the final table, figures)
        self.fit_started: float | None = None

    # ---- engine contract ----------------------------------------------------------------------------------
    def batch_size_per_rank(self, world_size: int) -> int:
        """The paper's batch n is global (method.global_batch): ranks get equal shares, remainder dropped."""
        if self.m.global_batch > 0:
            return max(1, self.m.global_batch // world_size)
        return self.cfg.data.batch_size

    def derived(self) -> dict:
        return {"in_dim": self.in_dim}

    def summary(self) -> dict:
        table = getattr(self, "results_table", None)
        return {"results_table": table} if table else {}

    def stages(self) -> list[Stage]:
        m = self.m
        out = []
        if m.warmup_epochs > 0:
            out.append(Stage("warmup", m.warmup_epochs, loss_weights=dict(m.warmup_weights), sched="constant"))
        if m.finetune_epochs > 0:
            out.append(Stage("finetune", m.finetune_epochs, loss_weights=dict(m.finetune_weights)))
        if not out:
            raise ValueError("method.warmup_epochs and method.finetune_epochs are both 0")
        return out

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"pre": list(self.pre.parameters()), "feature_head": list(self.feature_head.parameters()),
                  "cluster_head": list(self.cluster_head.parameters())}
        if self.objective.threshold is not None:
            groups["affinity"] = [self.objective.threshold]
        return groups

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(F, Z, logits) for pre-features x."""
        if self.m.normalize_input:
            x = nn.functional.normalize(x, dim=1)
        h = self.pre(x)
        f, z = self.feature_head(h)
        return f, z, self.cluster_head(h)

    def forward(self, batch: dict, stage: Stage) -> dict[str, torch.Tensor]:
        f, z, logits = self.embed(batch["feature"])
        pi = memberships(logits, self.m.activation, self.m.tau)
        out = self.objective(z, pi, stage.loss_weights, f=f)
        with torch.no_grad():   # how many clusters the batch's argmax uses (collapse shows here first)
            used = torch.zeros(self.m.k, device=logits.device).index_fill_(0, logits.argmax(1), 1.0)
            out["clusters_used"] = used.sum()   # a tensor: read on the host at log steps only
        return out

    def build_loaders(self, ctx):
        from dist_cluster.data.sampling import TensorLoader
        from dist_cluster.methods.cgmcr2.data import load_arrays
        self.fit_started = time.time()
        self._arrays = load_arrays(self.cfg.data)
        x, y, idx = self._arrays["train"]
        check_clusters(self.m.k, len(x), "method.k")
        if x.shape[1] != self.in_dim:
            from dist_cluster.config import ConfigError
            raise ConfigError(f"method.in_dim={self.in_dim}, but the training features are {x.shape[1]}-d; set "
                              f"method.in_dim={x.shape[1]} or method.in_dim=0 (taken from the data)")
        return TensorLoader(x, y, self.batch_size_per_rank(ctx.env.world_size), self.cfg.seed, ctx.env.rank,
                            ctx.env.world_size, drop_last=True, index=idx)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1024, device=None) -> dict[str, torch.Tensor]:
        """Z, logits and labels of pre-features x (eval mode: BN running statistics, no Gumbel noise)."""
        device = device or next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        zs, ls = [], []
        for chunk in torch.split(x, batch_size):
            _, z, logits = self.embed(chunk.to(device=device, dtype=dtype))
            zs.append(z.float().cpu())
            ls.append(logits.float().cpu())
        z, logits = (torch.cat(zs), torch.cat(ls)) if zs else (x.new_zeros(0, self.m.feature_dim),
                                                               x.new_zeros(0, self.m.k))
        if self.m.test_labels == "gumbel":
            labels = memberships(logits, "gumbel", self.m.tau).argmax(1)
        else:
            labels = logits.argmax(1)
        return {"z": z, "logits": logits, "labels": labels}

    @torch.no_grad()
    def evaluate(self, ctx) -> dict[str, float]:
        """ACC / NMI (method.nmi_average) / ARI of argmax labels over the whole evaluation split."""
        if self._arrays is None:
            from dist_cluster.methods.cgmcr2.data import load_arrays
            self._arrays = load_arrays(self.cfg.data)
        x, y, idx = self._arrays["eval"]
        mine = torch.tensor_split(torch.arange(len(x)), world_size())[ctx.env.rank]
        out = self.predict(x[mine], self.m.eval_batch_size, ctx.device)
        idx_all, z, logits, labels, y_all = gather_in_index_order(idx[mine], out["z"], out["logits"],
                                                                  out["labels"], y[mine])
        labelled = bool((y_all >= 0).all())   # −1 = unknown: no ACC/NMI/ARI
        res = cluster_metrics(y_all.numpy(), labels.numpy(), nmi_average=self.m.nmi_average) if labelled else {}
        res["clusters_used"] = int(labels.unique().numel())
        if ctx.env.is_main and res["clusters_used"] == 1 < self.m.k and float(z.norm(dim=1).max()) == 0.0:
            print(f"warning: CgMCR² collapsed at step {ctx.global_step}: every embedding is 0 and one of "
                  f"{self.m.k} clusters is used; the run diverged (lower optim.lr)", flush=True)
            res["collapsed"] = 1
        if self.m.sc_every_eval and labelled:   # rank 0's work; the others wait without a training timeout
            from dist_cluster.methods.cgmcr2.spectral import spectral_on_embeddings
            res |= main_only(lambda: {f"sc_{k}": v for k, v in cluster_metrics(
                y_all.numpy(), spectral_on_embeddings(z, self.m.k, self.m.sc_s, seed=1), self.m.nmi_average).items()})
        if ctx.env.is_main:
            order = torch.argsort(idx)       # pre-features in the same global-index order as the outputs
            self.last_eval = {"index": idx_all, "z": z, "logits": logits, "labels": labels, "y": y_all,
                              "x": x[order], "metrics": dict(res)}
        return {k: float(v) for k, v in res.items()}

    def write_figures(self, ctx) -> list[str]:
        """Rank 0: the final table (CgMCR², CgMCR²-SC, KMeans, SpectralClustering) and the figures."""
        if not ctx.env.is_main or not self.last_eval:
            return []
        from dist_cluster.methods.cgmcr2.report import final_report
        return final_report(self, ctx)
