"""Methods that also write their final assignments: `<run_dir>/predictions.npz` (index, cluster, confidence,
embedding) and `<run_dir>/model.pt` (the trained weights), on rank 0, after the method's own report.

Confidence is the largest cluster probability of a sample (softmax of the cluster head's logits).
The CLI and the estimators read these files, so one process and a torchrun job end the same way.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from dist_cluster.methods.cgmcr2.method import CgMCR2
from dist_cluster.methods.pici.method import PICI
from dist_cluster.methods.unic.method import UnicMethod


def save_predictions(run_dir: str, index, logits_or_probs, embedding, module, probs: bool = False) -> None:
    p = torch.as_tensor(logits_or_probs).float()
    p = p if probs else torch.softmax(p, dim=1)
    order = np.argsort(np.asarray(index))
    conf, cluster = p.max(dim=1)
    np.savez(os.path.join(run_dir, "predictions.npz"), index=np.asarray(index)[order],
             cluster=cluster.numpy()[order], confidence=conf.numpy()[order],
             embedding=torch.as_tensor(embedding).float().numpy()[order])
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, os.path.join(run_dir, "model.pt"))


class CgMCR2Run(CgMCR2):
    def write_figures(self, ctx) -> list[str]:
        paths = super().write_figures(ctx)
        if ctx.env.is_main and self.last_eval:
            ev = self.last_eval
            save_predictions(ctx.run_dir, ev["index"], ev["logits"], ev["z"], self)
        return paths


class UnicRun(UnicMethod):
    def write_figures(self, ctx) -> list[str]:
        paths = super().write_figures(ctx)
        out = getattr(self, "last_outputs", None)
        if ctx.env.is_main and out is not None:
            save_predictions(ctx.run_dir, out["index"], out["logits"], out["embedding"], self)
        return paths


class PICIRun(PICI):
    def write_figures(self, ctx) -> list[str]:
        paths = super().write_figures(ctx)
        ev = getattr(self, "last_eval", None)
        if ctx.env.is_main and ev and "index" in ev:
            save_predictions(ctx.run_dir, ev["index"], ev["c"], ev["z"], self, probs=True)
        return paths
