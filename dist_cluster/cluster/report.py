"""What the CLI leaves in the run directory (rank 0): clusters.csv, the result table (printed, .json, .md, .png)
and summary.json with the table, the label-free figures and the n_init selection."""
from __future__ import annotations

import csv
import json
import os

import numpy as np

from dist_cluster.cluster.table import NAMES, baseline_rows, format_table, mark_beaten, score_row, table_png, title_line

TITLES = {"cgmcr2": "CgMCR²", "unic": "UNIC", "pici": "PICI", "kmeans": "KMeans"}
SPLIT = "evaluated on the training data (clustering is transductive; no separate split)"


def write_clusters_csv(pred: dict, path: str) -> str:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "cluster", "confidence"])
        for i, c, p in zip(pred["index"], pred["cluster"], pred["confidence"]):
            w.writerow([int(i), int(c), f"{float(p):.4f}"])
    return path


def inputs_for_table(data) -> tuple[np.ndarray, np.ndarray | None]:
    """The inputs the baselines see (features, or flattened images at their stored size) and known labels."""
    if data.kind == "feature":
        from dist_cluster.data import load_feature_arrays
        x, y, _ = load_feature_arrays(data.manifest)
        x, y = x.numpy(), y.numpy()
    else:
        from dist_cluster.data.dataset import RandomAccessDataset
        from dist_cluster.data.transforms import make_transform
        size = max(data.image_size) if data.image_size[0] else 32
        ds = RandomAccessDataset(data.manifest, make_transform("plain", min(size, 32), 1, mean=(0.0,), std=(1.0,)),
                                 in_chans=1)
        items = [ds[i] for i in range(data.n)]
        x = np.stack([it["image"].numpy().reshape(-1) for it in items])
        y = np.array([it["label"] for it in items])
    return x.astype(np.float32), (y if (y >= 0).all() else None)


def build_rows(method: str, pred: dict, x, y, k: int, seed: int, nmi_average: str, best) -> dict:
    """The method's own rows (CgMCR² brings its table with CgMCR²-SC) and the baselines on the same inputs."""
    own = os.path.join(best.run_dir, "results_table.json")
    if method == "cgmcr2" and os.path.exists(own):
        return json.load(open(own))["rows"]
    rows = {}
    if method != "kmeans":
        rows[method] = score_row(pred["cluster"], x, y, nmi_average, input="learned", time_s=best.wall_s)
    rows |= baseline_rows(x, y, k, seed, nmi_average)
    mark_beaten(rows, (method,) if method != "kmeans" else ())
    return rows


def write_report(method: str, data, k: int, runs, best, selection: dict, run_dir: str, seed: int,
                 nmi_average: str = "arithmetic", world: int = 1) -> dict:
    os.makedirs(os.path.join(run_dir, "figures"), exist_ok=True)
    pred = dict(np.load(os.path.join(best.run_dir, "predictions.npz")))
    csv_path = write_clusters_csv(pred, os.path.join(run_dir, "clusters.csv"))
    x, y = inputs_for_table(data)
    rows = build_rows(method, pred, x, y, k, seed, nmi_average, best)
    title = title_line(TITLES[method], data.name, data.n, k, y is not None, SPLIT, nmi_average, world)
    names = {method: f"{TITLES[method]} (learned)"}
    if data.kind == "image":     # the baselines see grey pixels at ≤ 32 px
        names |= {k: v.replace("pre-features", "pixels") for k, v in NAMES.items()}
    if method == "cgmcr2":
        from dist_cluster.methods.cgmcr2.report import NAMES as names
    text = format_table(rows, title, names)
    sizes = np.bincount(pred["cluster"], minlength=k).tolist()
    label_free = {"cluster_sizes": sizes, "silhouette": score_row(pred["cluster"], x, None, nmi_average)["silhouette"],
                  "final_loss": best.loss}
    table = {"title": title, "data": data.name, "manifest": data.manifest, "split": SPLIT,
             "nmi_average": nmi_average, "rows": rows}
    if method != "cgmcr2" or len(runs) > 1:     # a single CgMCR² run printed the same rows itself
        print(text, flush=True)
    print(f"cluster sizes: {sizes}; silhouette: {label_free['silhouette']}; final loss: {best.loss}; "
          f"clusters: {csv_path}", flush=True)
    if len(runs) > 1:
        print("n_init: " + json.dumps(selection), flush=True)
    with open(os.path.join(run_dir, "results_table.json"), "w") as f:
        json.dump(table, f, indent=2)
    with open(os.path.join(run_dir, "results_table.md"), "w") as f:
        f.write("```\n" + text + "\n```\n")
    png = table_png(text, os.path.join(run_dir, "figures", "results_table.png"))
    path = os.path.join(run_dir, "summary.json")
    summary = json.load(open(path)) if os.path.exists(path) else {}
    summary |= {"method": method, "k": k, "clusters_csv": csv_path, "selected_run": best.run_dir,
                "table": table, "label_free": label_free, "n_init": selection, "table_png": png}
    if best.metrics:
        summary.setdefault("metrics", best.metrics)
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
    return summary
