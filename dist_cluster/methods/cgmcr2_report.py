"""The end-of-run table: CgMCR² (argmax), CgMCR²-SC and the classical baselines on the same pre-features.

Everything runs on rank 0 from the last evaluation's outputs; the table is printed and written to
<run_dir>/results_table.{json,md}.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from dist_cluster.eval import cluster_metrics

NAMES = {"cgmcr2": "CgMCR² (argmax of g)", "cgmcr2_sc": "CgMCR²-SC (spectral on Z)",
         "kmeans": "KMeans (pre-features)", "spectral": "SpectralClustering (pre-features)"}


def classical_baseline(name: str, x: np.ndarray, k: int, seed: int, spectral_neighbors: int = 10) -> np.ndarray:
    """Labels of scikit-learn's KMeans / SpectralClustering on L2-normalised pre-features."""
    from sklearn.cluster import KMeans, SpectralClustering
    x = F.normalize(torch.as_tensor(x).float(), dim=1).numpy()
    if name == "kmeans":
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    if name == "spectral":
        return SpectralClustering(n_clusters=k, affinity="nearest_neighbors", n_neighbors=spectral_neighbors,
                                  random_state=seed, n_jobs=1).fit_predict(x)
    raise ValueError(f"unknown baseline {name!r}; use kmeans or spectral")


def results_table(ev: dict, m, seed: int, fit_time_s: float | None = None) -> dict[str, dict]:
    """{method: {acc, nmi, ari, time_s}} for CgMCR², CgMCR²-SC and m.baselines on the eval outputs `ev`."""
    from dist_cluster.methods.cgmcr2_sc import spectral_on_embeddings
    y = ev["y"].numpy()
    rows = {"cgmcr2": cluster_metrics(y, ev["labels"].numpy(), m.nmi_average) | {"time_s": fit_time_s}}
    if len(y) <= m.k:        # too few points to partition into k clusters by the other methods
        return rows
    t = time.perf_counter()
    sc = spectral_on_embeddings(ev["z"], m.k, m.sc_s, seed=1)
    rows["cgmcr2_sc"] = cluster_metrics(y, sc, m.nmi_average) | {"time_s": time.perf_counter() - t}
    for name in m.baselines:
        t = time.perf_counter()
        pred = classical_baseline(name, ev["x"].numpy(), m.k, seed, m.spectral_neighbors)
        rows[name] = cluster_metrics(y, pred, m.nmi_average) | {"time_s": time.perf_counter() - t}
    return rows


def format_table(rows: dict[str, dict], title: str) -> str:
    lines = [title, f"{'method':<36} {'ACC':>7} {'NMI':>7} {'ARI':>7} {'time (s)':>9}"]
    for key, r in rows.items():
        t = f"{r['time_s']:9.1f}" if r.get("time_s") is not None else f"{'-':>9}"
        lines.append(f"{NAMES.get(key, key):<36} {r['acc']:7.4f} {r['nmi']:7.4f} {r['ari']:7.4f} {t}")
    return "\n".join(lines)


def final_report(method, ctx) -> list[str]:
    m, ev = method.m, method.last_eval
    fit_time = time.time() - method.fit_started if getattr(method, "fit_started", None) else None
    rows = results_table(ev, m, ctx.cfg.seed, fit_time)
    title = (f"CgMCR² on '{ctx.cfg.data.name}' evaluation split: N={len(ev['y'])}, k={m.k}, world size "
             f"{ctx.env.world_size}, NMI {m.nmi_average}; CgMCR² time = training + evaluations")
    text = format_table(rows, title)
    print(text, flush=True)
    with open(os.path.join(ctx.run_dir, "results_table.json"), "w") as f:
        json.dump({"title": title, "rows": rows}, f, indent=2)
    with open(os.path.join(ctx.run_dir, "results_table.md"), "w") as f:
        f.write("```\n" + text + "\n```\n")
    ctx.log({f"final/{k}/{metric}": v for k, r in rows.items() for metric, v in r.items() if v is not None})
    from dist_cluster.methods.cgmcr2_figures import write_all
    return write_all(ev, m, ctx.run_dir, ctx.figures_dir)
