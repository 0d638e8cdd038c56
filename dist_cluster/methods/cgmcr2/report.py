"""The end-of-run table: CgMCR² (argmax), CgMCR²-SC and the classical baselines on the same pre-features.

Everything runs on rank 0 from the last evaluation's outputs. The table (dist_cluster.cluster.table) names
the data the run read, the split evaluated, each baseline's input form (as given / L2-normalised) and NMI's
normalisation; it is printed and written to <run_dir>/results_table.{json,md} and figures/results_table.png.
The cost of each row is printed with it (CgMCR²-SC uses a sparse top-s graph, see cgmcr2_sc).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from dist_cluster.cluster.table import NAMES as BASELINE_NAMES
from dist_cluster.cluster.table import (
    baseline_labels,
    baseline_rows,
    l2_rows,
    mark_beaten,
    score_row,
    table_png,
    title_line,
)
from dist_cluster.cluster.table import format_table as _fmt

NAMES = {"cgmcr2": "CgMCR² (argmax of g)", "cgmcr2_sc": "CgMCR²-SC (spectral on Z)", **BASELINE_NAMES}


def classical_baseline(name: str, x: np.ndarray, k: int, seed: int, spectral_neighbors: int = 10,
                       form: str = "given") -> np.ndarray:
    """Labels of scikit-learn's KMeans / SpectralClustering (kNN graph) on the pre-features as given or
    L2-normalised."""
    return baseline_labels(name, l2_rows(x) if form == "l2" else x, k, seed, spectral_neighbors)


def results_table(ev: dict, m, seed: int, fit_time_s: float | None = None, nmi_average: str | None = None
                  ) -> dict[str, dict]:
    """{row: {input, acc, nmi, ari, silhouette, clusters_used, time_s[, beaten_by]}} on the eval outputs `ev`."""
    from dist_cluster.methods.cgmcr2.spectral import spectral_on_embeddings
    nmi = nmi_average or m.nmi_average
    y = ev["y"].numpy()
    y = y if (y >= 0).all() else None        # unknown labels (−1): label-free figures only
    x = ev["x"].numpy()
    rows = {"cgmcr2": score_row(ev["labels"].numpy(), x, y, nmi, input="learned", time_s=fit_time_s)}
    if len(x) > m.k:         # too few points to partition into k clusters by the other methods
        t = time.perf_counter()
        sc = spectral_on_embeddings(ev["z"], m.k, m.sc_s, seed=1)
        rows["cgmcr2_sc"] = score_row(sc, x, y, nmi, input="learned Z", time_s=time.perf_counter() - t)
        rows |= baseline_rows(x, y, m.k, seed, nmi, m.baselines, m.spectral_neighbors)
    mark_beaten(rows, ("cgmcr2", "cgmcr2_sc"))
    return rows


def format_table(rows: dict[str, dict], title: str) -> str:
    return _fmt(rows, title, NAMES)


def data_label(data_cfg) -> str:
    """The data the run read: the manifest's own name when data.train is given, else the named data set."""
    from dist_cluster.data.prepare import BUILDERS
    if not data_cfg.train:
        return data_cfg.name
    if data_cfg.name and data_cfg.name not in BUILDERS:      # named by the user (the CLI names it after DATA)
        return f"{data_cfg.name} ({data_cfg.train})"
    try:
        from dist_cluster.data import Manifest
        name = Manifest.load(data_cfg.train).source.get("name", "")
    except (OSError, ValueError, KeyError):
        name = ""
    return f"{name or os.path.basename(os.path.dirname(os.path.abspath(data_cfg.train)))} ({data_cfg.train})"


def split_label(data_cfg) -> str:
    if not data_cfg.eval or data_cfg.eval == data_cfg.train:
        return ("evaluated on the training data (no separate evaluation split)" if data_cfg.train or
                data_cfg.name in ("digits", "digits_pixels") else "evaluation split")
    return f"evaluation split {data_cfg.eval}"


def final_report(method, ctx) -> list[str]:
    m, ev = method.m, method.last_eval
    fit_time = time.time() - method.fit_started if getattr(method, "fit_started", None) else None
    rows = results_table(ev, m, ctx.cfg.seed, fit_time)
    title = title_line("CgMCR²", data_label(ctx.cfg.data), len(ev["y"]), m.k, "acc" in rows["cgmcr2"],
                       split_label(ctx.cfg.data), m.nmi_average, ctx.env.world_size)
    text = format_table(rows, title + "; CgMCR² time = training + evaluations")
    base = sum(r["time_s"] for k, r in rows.items() if k not in ("cgmcr2", "cgmcr2_sc"))
    print(text + f"\nreport cost: CgMCR²-SC {rows.get('cgmcr2_sc', {}).get('time_s', 0):.2f} s (top-{m.sc_s} graph, "
          f"Lanczos), baselines {base:.2f} s (SpectralClustering on a {m.spectral_neighbors}-NN graph)", flush=True)
    table = {"title": title, "data": data_label(ctx.cfg.data), "split": split_label(ctx.cfg.data),
             "nmi_average": m.nmi_average, "rows": rows}
    method.results_table = table     # the engine puts it in summary.json too
    with open(os.path.join(ctx.run_dir, "results_table.json"), "w") as f:
        json.dump(table, f, indent=2)
    with open(os.path.join(ctx.run_dir, "results_table.md"), "w") as f:
        f.write("```\n" + text + "\n```\n")
    ctx.log({f"final/{k}/{metric}": v for k, r in rows.items() for metric, v in r.items()
             if isinstance(v, (int, float))})
    from dist_cluster.methods.cgmcr2.figures import write_all
    return [table_png(text, os.path.join(ctx.figures_dir, "results_table.png"))] + write_all(ev, m, ctx.run_dir,
                                                                                          ctx.figures_dir)
