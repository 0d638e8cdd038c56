"""The result table: a method's rows beside scikit-learn baselines on the same inputs, each row with its input form.

Baselines: KMeans (n_init=10) and SpectralClustering on a sparse kNN graph, each on the inputs as given and
L2-normalised. With labels: ACC (Hungarian), NMI (scikit-learn's default arithmetic normalisation unless asked
otherwise) and ARI, and a method row whose ACC a baseline beats names that baseline. Always: clusters used
and the silhouette of the inputs under each partition (on a sample) — the label-free figures.
"""
from __future__ import annotations

import time

import numpy as np

NAMES = {"kmeans": "KMeans (pre-features)", "kmeans_l2": "KMeans (pre-features)",
         "spectral": "SpectralClustering (pre-features)", "spectral_l2": "SpectralClustering (pre-features)"}
FORMS = {"given": "as given", "l2": "L2-normalised"}
SHORT = {"kmeans": "KMeans (as given)", "kmeans_l2": "KMeans (L2)", "spectral": "Spectral (as given)",
         "spectral_l2": "Spectral (L2)"}
SILHOUETTE_SAMPLE = 2000


def l2_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def baseline_labels(name: str, x: np.ndarray, k: int, seed: int, neighbors: int = 10) -> np.ndarray:
    from sklearn.cluster import KMeans, SpectralClustering
    if name == "kmeans":
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    if name == "spectral":   # sparse kNN graph: cost grows with N·neighbors, not N²
        nn = min(neighbors, len(x) - 1)
        return SpectralClustering(n_clusters=k, affinity="nearest_neighbors", n_neighbors=nn,
                                  random_state=seed, n_jobs=1).fit_predict(x)
    raise ValueError(f"unknown baseline {name!r}; use kmeans or spectral")


def silhouette(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> float | None:
    from sklearn.metrics import silhouette_score
    if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= len(x):
        return None
    n = min(SILHOUETTE_SAMPLE, len(x))
    return float(silhouette_score(x, labels, sample_size=n if n < len(x) else None, random_state=seed))


def score_row(labels: np.ndarray, x: np.ndarray, y: np.ndarray | None, nmi_average: str, **extra) -> dict:
    """Label-free figures always; ACC/NMI/ARI when labels y are known (y ≥ 0)."""
    from dist_cluster.eval import cluster_metrics
    labels = np.asarray(labels)
    row = {"clusters_used": int(len(np.unique(labels))), "silhouette": silhouette(x, labels)} | extra
    if y is not None:
        row |= cluster_metrics(y, labels, nmi_average)
    return row


def baseline_rows(x: np.ndarray, y: np.ndarray | None, k: int, seed: int, nmi_average: str = "arithmetic",
                  baselines=("kmeans", "spectral"), neighbors: int = 10) -> dict[str, dict]:
    rows = {}
    if len(x) <= k:
        return rows
    for name in baselines:
        for form in ("given", "l2"):
            xf = x if form == "given" else l2_rows(x)
            t = time.perf_counter()
            pred = baseline_labels(name, xf, k, seed, neighbors)
            dt = time.perf_counter() - t
            rows[name if form == "given" else f"{name}_l2"] = score_row(pred, x, y, nmi_average, input=FORMS[form],
                                                                        time_s=dt)
    return rows


def mark_beaten(rows: dict[str, dict], method_keys) -> None:
    """Each method row gets `beaten_by`: the baselines with a higher ACC (labelled data only)."""
    for key in method_keys:
        r = rows.get(key)
        if r is None or "acc" not in r:
            continue
        r["beaten_by"] = [b for b, br in rows.items() if b not in method_keys and br.get("acc", -1) > r["acc"]]


def _f(v, width=7, digits=4):
    return f"{v:{width}.{digits}f}" if isinstance(v, (int, float)) and v is not None else f"{'-':>{width}}"


def format_table(rows: dict[str, dict], title: str, names: dict | None = None) -> str:
    names = {**NAMES, **(names or {})}
    lines = [title, f"{'method':<36} {'input':<14} {'ACC':>7} {'NMI':>7} {'ARI':>7} {'silh.':>7} {'used':>5} "
                    f"{'time (s)':>9}"]
    for key, r in rows.items():
        mark = f"  < beaten by {', '.join(SHORT.get(b, b) for b in r['beaten_by'])}" if r.get("beaten_by") else ""
        lines.append(f"{names.get(key, key):<36} {r.get('input', ''):<14} {_f(r.get('acc'))} {_f(r.get('nmi'))} "
                     f"{_f(r.get('ari'))} {_f(r.get('silhouette'))} {r.get('clusters_used', '-'):>5} "
                     f"{_f(r.get('time_s'), 9, 1)}{mark}")
    return "\n".join(lines)


def title_line(method: str, data_name: str, n: int, k: int, labelled: bool, split: str, nmi_average: str,
               world_size: int = 1) -> str:
    labels = (f"NMI {nmi_average}{' (scikit-learn default)' if nmi_average == 'arithmetic' else ''}" if labelled
              else "no labels: ACC/NMI/ARI not computed")
    return (f"{method} on '{data_name}', {split}: N={n}, k={k}, world size {world_size}; {labels}; "
            f"silhouette of the inputs on ≤{SILHOUETTE_SAMPLE} samples")


def table_png(text: str, path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lines = text.splitlines()
    fig = plt.figure(figsize=(max(8, 0.085 * max(map(len, lines))), 0.3 * len(lines) + 0.4))
    fig.text(0.01, 0.98, text, family="monospace", fontsize=9, va="top")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
