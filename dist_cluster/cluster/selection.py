"""Which of the `--n-init` seeds the CLI keeps: a label-free rule (`RULES`), higher score wins.

  silhouette  the highest silhouette of the seed's partition in its own learned space (default; predictions.npz
              `embedding`: CgMCR²'s Z, PICI's instance features; head-only UNIC learns no embedding, so its
              input features)
  consensus   the seed whose partition agrees most (mean ARI) with the other seeds' partitions
  loss        the lowest final training loss: the mean of the logged losses over the last 10% of logged steps

The default is the rule that picked an above-median seed most often in tools/seed_selection.py's measurement
(README, "Which seed --n-init keeps": silhouette 5 of 7 cases, consensus and loss 4; the loss rule kept the
worst of five UNIC seeds on digits, consensus a below-median CgMCR² and PICI seed).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from dist_cluster.cluster.run import SeedRun

RULES = {
    "silhouette": "the highest silhouette of the partition in the method's learned space",
    "consensus": "the partition that agrees most (mean ARI) with the other seeds' partitions",
    "loss": "the lowest final training loss (mean over the last 10% of logged steps)",
}
DEFAULT_RULE = "silhouette"


def consensus_scores(partitions: list[np.ndarray]) -> list[float]:
    """Each partition's mean adjusted Rand index with the others (1 seed: 1.0)."""
    from sklearn.metrics import adjusted_rand_score
    n = len(partitions)
    if n == 1:
        return [1.0]
    ari = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            ari[i, j] = ari[j, i] = adjusted_rand_score(partitions[i], partitions[j])
    return [float((ari[i].sum() - 1.0) / (n - 1)) for i in range(n)]


def silhouette_scores(embeddings: list[np.ndarray], partitions: list[np.ndarray]) -> list[float | None]:
    """Silhouette of each partition in its own embedding, on the same ≤ 2,000 rows for every seed; None for a
    partition with one cluster (undefined)."""
    from dist_cluster.cluster.table import silhouette
    return [silhouette(np.asarray(e, dtype=np.float32), p) for e, p in zip(embeddings, partitions)]


def _predictions(run: SeedRun) -> dict | None:
    path = os.path.join(run.run_dir, "predictions.npz")
    return dict(np.load(path)) if os.path.exists(path) else None


def rule_scores(runs: list[SeedRun], rule: str) -> list[float | None]:
    """Each seed's score under `rule`, higher is better; None where it cannot be scored (no loss logged, no
    predictions written, one cluster)."""
    if rule not in RULES:
        raise ValueError(f"unknown seed selection rule {rule!r}; choose one of {', '.join(RULES)}")
    if rule == "loss":
        return [-r.loss if r.loss is not None and np.isfinite(r.loss) else None for r in runs]
    if len(runs) == 1:
        return [None]
    preds = [_predictions(r) for r in runs]
    ok = [i for i, p in enumerate(preds) if p is not None]
    out: list[float | None] = [None] * len(runs)
    if not ok:
        return out
    parts = [preds[i]["cluster"] for i in ok]
    vals = consensus_scores(parts) if rule == "consensus" else \
        silhouette_scores([preds[i]["embedding"] for i in ok], parts)
    for i, v in zip(ok, vals):
        out[i] = v
    return out


def pick(scores: list[float | None], losses: list[float | None]) -> int:
    """Index of the highest score; ties (two seeds' consensus is always a tie) go to the lower loss, then the
    first seed. No score at all: the first seed."""
    def key(i):
        loss = losses[i] if losses[i] is not None and np.isfinite(losses[i]) else np.inf
        return (-round(scores[i], 12), loss, i)
    scored = [i for i, s in enumerate(scores) if s is not None and np.isfinite(s)]
    return min(scored, key=key) if scored else 0


def select(runs: list[SeedRun], rule: str = DEFAULT_RULE) -> SeedRun:
    return runs[pick(rule_scores(runs, rule), [r.loss for r in runs])]


def selection_report(runs: list[SeedRun], best: SeedRun, rule: str = DEFAULT_RULE) -> dict:
    """What the selection chose (and what each rule would have chosen) and, on labelled data, whether the
    choice beats the seeds' mean and median ACC."""
    out = {"rule": rule, "criterion": RULES[rule], "seeds": [r.seed for r in runs],
           "losses": [r.loss for r in runs], "selected_seed": best.seed}
    if len(runs) > 1:
        scores = {r: rule_scores(runs, r) for r in RULES}
        out |= {"scores": scores[rule],
                "by_rule": {r: runs[pick(sc, out["losses"])].seed for r, sc in scores.items()}}
    accs = [r.metrics.get("acc") for r in runs]
    if all(a is not None for a in accs) and len(runs) > 1:
        out |= {"acc": accs, "selected_acc": best.metrics["acc"], "mean_acc": float(np.mean(accs)),
                "median_acc": float(np.median(accs)),
                "selected_beats_mean": bool(best.metrics["acc"] > np.mean(accs)),
                "selected_beats_median": bool(best.metrics["acc"] > np.median(accs))}
    return out


