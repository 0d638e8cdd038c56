"""PICI through its recipe: clustering quality beside KMeans on the raw pixels, and training images/s on 1 and
2 processes (stage 2, the costliest, at the same global batch of 96).

Full: recipes/pici_fmnist.py on the first 10,000 training images when Fashion-MNIST is installed, else
recipes/pici_digits.py, with the recipe's schedule; quick: a 1 + 1 + 1 epoch run on the first 384 digits, no
throughput. Exactness: the run's ACC/NMI are in [0, 1] and every step's loss is finite.
"""
from __future__ import annotations

import math
import os

import numpy as np

from dist_cluster.bench.recipe_runs import records, run_recipe, seconds_per_step, summary
from dist_cluster.bench.registry import Options, Row

FMNIST = "/usr/share/datasets/fashion-mnist"


def raw_pixels(recipe: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    from dist_cluster.data.sources import digits_source, fmnist_source
    src = fmnist_source("train") if recipe == "pici_fmnist" else digits_source()
    n = n or len(src)
    return src.images[:n].reshape(n, -1).astype(np.float64), src.labels[:n]


def run(opts: Options) -> list[Row]:
    from sklearn.cluster import KMeans

    from dist_cluster.eval import cluster_metrics
    recipe = "pici_fmnist" if os.path.isdir(FMNIST) and not opts.quick else "pici_digits"
    n = 10000 if recipe == "pici_fmnist" else 384 if opts.quick else 0      # quick: 4 batches an epoch
    ov = [f"data.train_samples={n}"] if n else []
    if opts.quick:
        ov += ["method.pretrain_epochs=1", "method.train_epochs=1", "method.boost_epochs=1", "engine.eval_every=0",
               "method.recon_images=0", "method.tsne_samples=0", "method.kmeans_n_init=2"]
    run_dir = os.path.join(opts.out, "pici", recipe)
    run_recipe(recipe, ov + ["engine.log_every=1"], run_dir, threads=opts.threads)
    got = summary(run_dir)["metrics"]
    x, y = raw_pixels(recipe, n)
    km = cluster_metrics(y, KMeans(10, n_init=10, random_state=0).fit_predict(x))
    finite = all(math.isfinite(r.get("loss", 0.0)) for r in records(run_dir) if r["kind"] == "train")
    rows = [Row("pici", f"{m.upper()}, {recipe} (transductive)", "1", got[m], "KMeans raw pixels", km[m],
                "" if opts.quick else "≥1.0", finite and 0 <= got[m] <= 1, "", "") for m in ("acc", "nmi")]
    base = None
    for world in [] if opts.quick else sorted(set(opts.procs) | {1}):      # speed only: not in quick
        tdir = os.path.join(opts.out, "pici", f"throughput_{world}")
        run_recipe(recipe, ["method.pretrain_epochs=0", "method.boost_epochs=0", "method.train_epochs=2",
                            f"data.batch_size={96 // world}", "engine.max_steps=30", "engine.log_every=1",
                            "engine.eval_every=0", "ckpt.save_at_epoch_end=false", "method.recon_images=0",
                            "method.tsne_samples=0", "data.train_samples=1500"], tdir, nproc=world,
                   threads=max(1, opts.threads // world))
        rate = 96 / seconds_per_step(tdir)
        base = base or rate
        layout = f"{world}×{max(1, opts.threads // world)}"
        rows.append(Row("pici", "training images/s, stage 2, global batch 96", layout,
                        rate, "ours 1 process" if world > 1 else "", base if world > 1 else None,
                        "" if opts.quick or world == 1 else "≥1.3", unit="img/s"))
    return rows
