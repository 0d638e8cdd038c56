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


class _SavesPredictions:
    """write_figures, then (rank 0) the predictions of `prediction_outputs()`: (index, logits or probabilities,
    embedding, whether they are probabilities), or None when there is no evaluation to save."""

    def write_figures(self, ctx) -> list[str]:
        paths = super().write_figures(ctx)
        out = self.prediction_outputs() if ctx.env.is_main else None
        if out is not None:
            index, scores, embedding, probs = out
            save_predictions(ctx.run_dir, index, scores, embedding, self, probs=probs)
        return paths


class CgMCR2Run(_SavesPredictions, CgMCR2):
    def prediction_outputs(self):
        ev = self.last_eval
        return (ev["index"], ev["logits"], ev["z"], False) if ev else None


class UnicRun(_SavesPredictions, UnicMethod):
    def prediction_outputs(self):
        out = getattr(self, "last_outputs", None)
        return (out["index"], out["logits"], out["embedding"], False) if out is not None else None


class PICIRun(_SavesPredictions, PICI):
    def prediction_outputs(self):
        ev = getattr(self, "last_eval", None)
        return (ev["index"], ev["c"], ev["z"], True) if ev and "index" in ev else None
