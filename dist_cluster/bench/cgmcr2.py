"""CgMCR² against KMeans and SpectralClustering on the same pre-features, each run through its recipe.

Full: recipes/cgmcr2_fmnist.py (10k training images, T₁=5, T₂=10; EfficientNet-Lite0 features of
Fashion-MNIST) for seeds 0-2 when Fashion-MNIST is installed, else recipes/cgmcr2_digits.py; the run's own
results table gives ACC/NMI/ARI of every method on the same data, averaged over seeds. Quick: a 2 + 2 epoch
digits run. Exactness: every score is finite and in [0, 1].
"""
from __future__ import annotations

import json
import os
import statistics

from dist_cluster.bench.recipe_runs import run_recipe
from dist_cluster.bench.registry import Options, Row

FMNIST = "/usr/share/datasets/fashion-mnist"


def plan(quick: bool) -> tuple[str, list[str], list[int]]:
    if quick:
        return "cgmcr2_digits", ["method.warmup_epochs=1", "method.finetune_epochs=1", "engine.eval_every=0"], [0]
    if os.path.isdir(FMNIST):
        return "cgmcr2_fmnist", ["data.train_samples=10000", "method.warmup_epochs=5",
                                 "method.finetune_epochs=10"], [0, 1, 2]
    return "cgmcr2_digits", [], [0, 1, 2]


def run(opts: Options) -> list[Row]:
    recipe, overrides, seeds = plan(opts.quick)
    tables = []
    for seed in seeds:
        run_dir = os.path.join(opts.out, "cgmcr2", f"{recipe}_seed{seed}")
        run_recipe(recipe, [f"seed={seed}", *overrides], run_dir, threads=opts.threads)
        with open(os.path.join(run_dir, "results_table.json")) as f:
            tables.append(json.load(f)["rows"])
    rows = []
    for peer in ("kmeans", "spectral"):
        for metric in ("acc", "nmi", "ari"):
            ours = [t["cgmcr2"][metric] for t in tables]
            ref = [t[peer][metric] for t in tables if peer in t]
            if not ref:
                continue
            ok = all(0 <= v <= 1 for v in ours + ref)
            rows.append(Row("cgmcr2", f"{metric.upper()}, {recipe}, seeds {seeds}", "1", statistics.mean(ours),
                            peer, statistics.mean(ref), "" if opts.quick or metric != "acc" else "≥1.0", ok,
                            f"CgMCR² − {peer}: {100 * (statistics.mean(ours) - statistics.mean(ref)):+.1f} points",
                            ""))
    fit = [t["cgmcr2"].get("time_s") for t in tables if t["cgmcr2"].get("time_s") is not None]
    km = [t["kmeans"].get("time_s") for t in tables if t.get("kmeans", {}).get("time_s") is not None]
    if fit and km:
        rows.append(Row("cgmcr2", f"clustering time in the report, {recipe}", "1", statistics.mean(fit), "kmeans",
                        statistics.mean(km)))
    return rows
