"""The end-of-run table: CgMCR² (argmax), CgMCR²-SC and the baselines on the same pre-features.

Everything runs on rank 0 from the last evaluation's outputs (the evaluation split: for the ImageNet recipes
the 50,000 validation rows, never the 1.28 M training rows). The table (dist_cluster.cluster.table) names the
data, the split, what each row clustered and its input form; the baselines (dist_cluster.cluster.baselines,
seeded with REPORT_SEED, not the run's seed) are scikit-learn's up to 10,000 rows and dist_cluster's k-means and
kNN-graph spectral clustering above (Spectral on a seeded sample of max(10,000, 50·k) rows); silhouettes use a
seeded 10,000-row sample. Every step is printed with its time, and the estimate first when over a minute.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from dist_cluster.cluster.baselines import kmeans_cost, l2_rows, sklearn_labels
from dist_cluster.cluster.clock import ReportClock
from dist_cluster.cluster.table import (
    NOTE,
    TRANSDUCTIVE,
    TableRows,
    announce,
    clustered_name,
    mark_beaten,
    table_png,
    title_line,
)
from dist_cluster.cluster.table import format_table as _fmt

NAMES = {"cgmcr2": "CgMCR² (argmax of g)", "cgmcr2_sc": "CgMCR²-SC (spectral on Z)"}
HINT = "fewer baselines: method.baselines=[kmeans] or [] (CLI: --baselines kmeans|none)"


def classical_baseline(name: str, x: np.ndarray, k: int, seed: int, spectral_neighbors: int = 10,
                       form: str = "given") -> np.ndarray:
    """Labels of scikit-learn's KMeans / SpectralClustering (kNN graph) on the pre-features as given or
    L2-normalised."""
    return sklearn_labels(name, l2_rows(x) if form == "l2" else x, k, seed, spectral_neighbors)


def results_table(ev: dict, m, fit_time_s: float | None = None, nmi_average: str | None = None,
                  clustered: str = "input features", clock: ReportClock | None = None, device="cpu"
                  ) -> dict[str, dict]:
    """{row: {name, clustered, input, rows, acc, nmi, ari, silhouette, clusters_used, time_s[, beaten_by]}} on the
    eval outputs `ev`."""
    from dist_cluster.methods.cgmcr2.spectral import spectral_on_embeddings
    y = ev["y"].numpy()
    y = y if (y >= 0).all() else None        # unknown labels (−1): label-free figures only
    x = ev["x"].numpy()
    t = TableRows(x, y, m.k, nmi_average or m.nmi_average, clustered, clock)
    t.add("cgmcr2", NAMES["cgmcr2"], ev["labels"].numpy(), input="learned", time_s=fit_time_s)
    if len(x) > m.k:         # too few points to partition into k clusters by the other methods
        with t.clock.step(f"CgMCR²-SC (top-{m.sc_s} graph of |ZZᵀ|, Lanczos) on {len(x)} rows"):
            t0 = time.perf_counter()
            sc = spectral_on_embeddings(ev["z"], m.k, m.sc_s, seed=1)
            t.add("cgmcr2_sc", NAMES["cgmcr2_sc"], sc, input="learned Z", time_s=time.perf_counter() - t0)
        t.add_baselines(m.baselines, m.spectral_neighbors, device=device)
    rows = t.finish()
    mark_beaten(rows, ("cgmcr2", "cgmcr2_sc"))
    return rows


def format_table(rows: dict[str, dict], title: str, notes=(NOTE,)) -> str:
    return _fmt(rows, title, NAMES, notes)


def data_label(data_cfg) -> str:
    """The data the run read: the user's name (the CLI names it after DATA) or the named data set; else the
    manifest's own name, or its folder."""
    from dist_cluster.data.prepare import BUILDERS
    if not data_cfg.train or (data_cfg.name and data_cfg.name not in BUILDERS):
        return data_cfg.name
    try:
        from dist_cluster.data import Manifest
        name = Manifest.load(data_cfg.train).source.get("name", "")
    except (OSError, ValueError, KeyError):
        name = ""
    return name or os.path.basename(os.path.dirname(os.path.abspath(data_cfg.train)))


def split_label(data_cfg) -> str:
    if not data_cfg.eval or data_cfg.eval == data_cfg.train:
        return TRANSDUCTIVE if data_cfg.train or data_cfg.name in ("digits", "digits_pixels") else "evaluation split"
    return f"evaluation split {data_cfg.eval}"


def _clustered(data_cfg) -> str:
    try:
        from dist_cluster.methods.cgmcr2.data import manifests
        return clustered_name(manifests(data_cfg)["eval"])
    except (OSError, ValueError, KeyError):
        return "input features"


def final_report(method, ctx) -> list[str]:
    m, ev = method.m, method.last_eval
    n, d = ev["x"].shape
    clock = ReportClock("CgMCR² report")      # told apart from the cluster CLI's own [report] lines
    sc_ops = n * n * ev["z"].shape[1] + kmeans_cost(n, m.k, m.k, n_init=20)      # CgMCR²-SC's graph and k-means
    announce(clock, n, d, m.k, m.baselines, extra_ops=sc_ops, hint=HINT, device=ctx.device)
    fit_time = time.time() - method.fit_started if getattr(method, "fit_started", None) else None
    rows = results_table(ev, m, fit_time, clustered=_clustered(ctx.cfg.data), clock=clock, device=ctx.device)
    title = title_line("CgMCR²", data_label(ctx.cfg.data), n, m.k, "acc" in rows["cgmcr2"],
                       split_label(ctx.cfg.data), m.nmi_average, ctx.env.world_size)
    text = format_table(rows, title, (NOTE, "CgMCR² time = training + evaluations"))
    print(text, flush=True)
    table = {"title": title, "data": data_label(ctx.cfg.data), "split": split_label(ctx.cfg.data),
             "nmi_average": m.nmi_average, "rows": rows}
    method.results_table = table     # the engine puts it in summary.json too
    ctx.log({f"final/{k}/{metric}": v for k, r in rows.items() for metric, v in r.items()
             if isinstance(v, (int, float))})
    from dist_cluster.methods.cgmcr2.figures import write_all
    with clock.step("results_table.{json,md,png} and figures"):
        with open(os.path.join(ctx.run_dir, "results_table.json"), "w") as f:
            json.dump(table, f, indent=2)
        with open(os.path.join(ctx.run_dir, "results_table.md"), "w") as f:
            f.write("```\n" + text + "\n```\n")
        paths = [table_png(text, os.path.join(ctx.figures_dir, "results_table.png"))]
        paths += write_all(ev, m, ctx.run_dir, ctx.figures_dir)
    table["report"] = clock.record()
    return paths
