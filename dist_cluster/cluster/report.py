"""What the CLI leaves in the run directory (rank 0): clusters.csv, the result table (printed, .json, .md, .png)
and summary.json with the table, the label-free figures and the n_init selection."""
from __future__ import annotations

import csv
import json
import os

import numpy as np

from dist_cluster.cluster.baselines import CHOICES, SKLEARN_MAX_ROWS
from dist_cluster.cluster.clock import ReportClock
from dist_cluster.cluster.inputs import skip_summary
from dist_cluster.cluster.kmeans_run import NAME as KMEANS_NAME
from dist_cluster.cluster.table import (
    TRANSDUCTIVE,
    TableRows,
    announce,
    clustered_name,
    format_table,
    mark_beaten,
    table_png,
    title_line,
)

TITLES = {"cgmcr2": "CgMCR²", "unic": "UNIC", "pici": "PICI", "kmeans": KMEANS_NAME}
ROW_NAMES = {"cgmcr2": "CgMCR² (argmax of g)", "unic": "UNIC", "pici": "PICI", "kmeans": KMEANS_NAME}
# --method kmeans: the baselines' "kmeans" row is scikit-learn's (small N), so the method's row has its own key
METHOD_KEYS = {"kmeans": "kmeans_dist_cluster"}
SPLIT = TRANSDUCTIVE
HINT = "--baselines kmeans or none drops baseline rows"


def write_clusters_csv(pred: dict, path: str) -> str:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "cluster", "confidence"])
        for i, c, p in zip(pred["index"], pred["cluster"], pred["confidence"]):
            w.writerow([int(i), int(c), f"{float(p):.4f}"])
    return path


_INPUTS: dict = {}


def inputs_for_table(data) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The inputs the baselines see (features, or flattened grey images at ≤ 32 px), known labels and the rows'
    global indices (a sample the data layer skipped has no row); read once per manifest (--method kmeans
    clusters them, then the report scores them)."""
    if data.manifest in _INPUTS:
        return _INPUTS[data.manifest]
    if data.kind == "feature":
        from dist_cluster.data import load_feature_arrays
        x, y, index = load_feature_arrays(data.manifest)
        x, y, index = x.numpy(), y.numpy(), index.numpy()
    else:
        from dist_cluster.data.dataset import RandomAccessDataset
        from dist_cluster.data.transforms import make_transform
        ds = RandomAccessDataset(data.manifest, make_transform("plain", _side(data), 1, mean=(0.0,), std=(1.0,)),
                                 in_chans=1)
        # an undecodable image gets a neighbour standing in (its index is the neighbour's): no row, as in the
        # method's predictions, whose evaluation pass drops the repeat
        items = [it for i in range(data.n) if (it := ds[i])["index"] == i]
        index = np.array([it["index"] for it in items], dtype=np.int64)
        x = np.stack([it["image"].numpy().reshape(-1) for it in items])
        y = np.array([it["label"] for it in items])
    _INPUTS.clear()
    _INPUTS[data.manifest] = x.astype(np.float32), (y if (y >= 0).all() else None), index
    return _INPUTS[data.manifest]


def _side(data) -> int:
    return min(max(data.image_size) if data.image_size[0] else 32, 32)


def method_key(method: str) -> str:
    return METHOD_KEYS.get(method, method)


def build_rows(method: str, pred: dict, x, y, k: int, nmi_average: str, best, clustered: str,
               baselines: str = "all", clock: ReportClock | None = None) -> dict:
    """The method's own rows (CgMCR² brings its table with CgMCR²-SC) and the baselines on the same inputs."""
    own = os.path.join(best.run_dir, "results_table.json")
    if method == "cgmcr2" and os.path.exists(own):
        return json.load(open(own))["rows"]
    t = TableRows(x, y, k, nmi_average, clustered, clock)
    key = method_key(method)
    extra = {"clustered": "images"} if method == "pici" else {}      # PICI trains on the images themselves
    t.add(key, ROW_NAMES[method], pred["cluster"], input="as given" if method == "kmeans" else "learned",
          time_s=best.wall_s, **extra)
    # above scikit-learn's cut-off the as-given KMeans baseline would be this very algorithm again
    skip = ("kmeans",) if method == "kmeans" and len(x) > SKLEARN_MAX_ROWS else ()
    t.add_baselines(CHOICES[baselines], skip=skip)
    rows = t.finish()
    mark_beaten(rows, (key,))
    return rows


def _width(data) -> int:
    return data.feature_dim if data.kind == "feature" else _side(data) ** 2


def write_report(method: str, data, k: int, runs, best, selection: dict, run_dir: str, seed: int,
                 nmi_average: str = "arithmetic", world: int = 1, baselines: str = "all") -> dict:
    """seed: the method's; the baselines use baselines.REPORT_SEED whatever it is."""
    clock = ReportClock()
    if method != "cgmcr2":       # CgMCR²'s rows come from its own end-of-run report
        skip = ("kmeans",) if method == "kmeans" and data.n > SKLEARN_MAX_ROWS else ()
        announce(clock, data.n, _width(data), k, CHOICES[baselines], skip, hint=HINT)
    os.makedirs(os.path.join(run_dir, "figures"), exist_ok=True)
    with clock.step("clusters.csv"):
        pred = dict(np.load(os.path.join(best.run_dir, "predictions.npz")))
        csv_path = write_clusters_csv(pred, os.path.join(run_dir, "clusters.csv"))
    with clock.step("inputs for the table"):
        x, y, _ = inputs_for_table(data)
    clustered = clustered_name(data.manifest)
    rows = build_rows(method, pred, x, y, k, nmi_average, best, clustered, baselines, clock)
    title = title_line(TITLES[method], data.name, data.n, k, y is not None, SPLIT, nmi_average, world)
    text = format_table(rows, title)
    sizes = np.bincount(pred["cluster"], minlength=k).tolist()
    label_free = {"cluster_sizes": sizes, "silhouette": rows[method_key(method)]["silhouette"],
                  "final_loss": best.loss}
    table = {"title": title, "data": data.name, "manifest": data.manifest, "split": SPLIT,
             "nmi_average": nmi_average, "baselines": baselines, "rows": rows}
    if method != "cgmcr2" or len(runs) > 1:     # a single CgMCR² run printed the same rows itself
        print(text, flush=True)
    print(f"cluster sizes: {sizes}; silhouette: {label_free['silhouette']}; final loss: {best.loss}; "
          f"clusters: {csv_path}", flush=True)
    if len(runs) > 1:
        print("n_init: " + json.dumps(selection), flush=True)
    with clock.step("results_table.{json,md,png}"):
        with open(os.path.join(run_dir, "results_table.json"), "w") as f:
            json.dump(table, f, indent=2)
        with open(os.path.join(run_dir, "results_table.md"), "w") as f:
            f.write("```\n" + text + "\n```\n")
        png = table_png(text, os.path.join(run_dir, "figures", "results_table.png"))
    path = os.path.join(run_dir, "summary.json")
    summary = json.load(open(path)) if os.path.exists(path) else {}
    summary |= {"method": method, "k": k, "clusters_csv": csv_path, "selected_run": best.run_dir,
                "table": table, "label_free": label_free, "n_init": selection, "table_png": png,
                "report": clock.record(say_total=method != "cgmcr2")}     # CgMCR²'s report said its own total
    summary |= skip_summary(data, pred["index"])     # also for KMeans and --n-init runs (no trainer summary)
    if best.metrics:
        summary.setdefault("metrics", best.metrics)
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
    return summary
