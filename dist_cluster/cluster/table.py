"""The result table: a method's rows beside baselines on the same inputs, each row saying what it clustered.

Columns: method (the algorithm and whose implementation), clustered (what its rows were: input features,
EfficientNet-Lite0 features, pixels, ...), input (as given / L2-normalised / learned), rows (N, or the seeded
sample it ran on), ACC, NMI, ARI (with labels: Hungarian ACC, NMI's normalisation as asked), silh. (silhouette
of the inputs under the partition, on one seeded sample shared by all rows: `silhouette`), used (non-empty
clusters) and time. A method row whose ACC a baseline beats names that baseline. Baselines: `baselines`.
"""
from __future__ import annotations

import numpy as np

from dist_cluster.cluster.baselines import (
    REPORT_SEED,
    SKLEARN_MAX_ROWS,
    SPECTRAL_ROWS,
    SPECTRAL_ROWS_PER_CLUSTER,
    estimate_seconds,
    fit,
    gemm_rate,
    plan,
    sample_rows,
)
from dist_cluster.cluster.clock import ReportClock
from dist_cluster.cluster.silhouette import SAMPLE, silhouettes

FORMS = {"given": "as given", "l2": "L2-normalised"}
SHORT = {"kmeans": "KMeans (as given)", "kmeans_l2": "KMeans (L2)", "spectral": "Spectral (as given)",
         "spectral_l2": "Spectral (L2)"}
SILHOUETTE_SAMPLE = 2000
BACKBONES = {"efficientnet_lite0": "EfficientNet-Lite0"}
TRANSDUCTIVE = "training data (clustering is transductive)"
NOTE = (f"baselines: seed {REPORT_SEED} whatever the method's seed; scikit-learn's for N ≤ {SKLEARN_MAX_ROWS:,}, "
        f"dist_cluster's above (Spectral then on a seeded sample of max({SPECTRAL_ROWS:,}, "
        f"{SPECTRAL_ROWS_PER_CLUSTER}·k) rows)")


def clustered_name(manifest: str) -> str:
    """What a manifest's rows are, as the table names them: pixels, <backbone> features, or input features."""
    from dist_cluster.data import Manifest
    m = Manifest.load(manifest)
    if m.kind == "image" or m.source.get("name") == "digits_pixels":
        return "pixels"
    spec = str(m.source.get("backbone") or "")
    name = spec.split("@")[0].split(":")[-1]
    return f"{BACKBONES.get(name, name)} features" if name else "input features"


def silhouette_scope(n: int) -> str:
    return f"all {n} rows" if n <= SAMPLE else f"a seeded {SAMPLE:,}-row sample"


class TableRows:
    """Rows scored as they come (ACC/NMI/ARI on the rows each partition covers); the silhouettes of all rows
    in one pass over one seeded sample at `finish`."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, k: int, nmi_average: str = "arithmetic",
                 clustered: str = "input features", clock: ReportClock | None = None):
        self.x, self.y, self.k, self.nmi, self.clustered = x, y, k, nmi_average, clustered
        self.clock = clock or ReportClock(quiet=True)
        self.sil_rows = sample_rows(len(x), SAMPLE)
        self.rows: dict[str, dict] = {}
        self.partitions: dict[str, tuple[np.ndarray, np.ndarray]] = {}     # key: (row ids, their labels)

    def add(self, key: str, name: str, labels, covered: np.ndarray | None = None, **fields) -> dict:
        """labels of the rows `covered` (a sorted subset of `sample_rows`; default all)."""
        from dist_cluster.eval import cluster_metrics
        labels = np.asarray(labels).reshape(-1)
        covered = np.arange(len(self.x)) if covered is None else covered
        row = {"name": name, "clustered": self.clustered, **fields, "rows": len(covered),
               "clusters_used": int(len(np.unique(labels))), "silhouette": None}
        if self.y is not None:
            row |= cluster_metrics(self.y[covered], labels, self.nmi)
        self.rows[key] = row
        pos = np.searchsorted(covered, self.sil_rows).clip(max=len(covered) - 1)
        pos = pos[covered[pos] == self.sil_rows]      # the sample's rows this partition covers (all, as sampled)
        self.partitions[key] = (covered[pos], labels[pos])
        return row

    def add_baselines(self, which=("kmeans", "spectral"), neighbors: int = 10, skip=(), device="cpu") -> None:
        for b in plan(len(self.x), self.k, which, skip):
            what = f"{b.label} on {self.clustered}, {FORMS[b.form]}, {b.rows} rows"
            with self.clock.step(what):
                labels, dt = fit(b, self.x, self.k, neighbors, device)
                self.add(b.key, b.label, labels, sample_rows(len(self.x), b.rows), input=FORMS[b.form],
                         time_s=dt)

    def finish(self) -> dict[str, dict]:
        with self.clock.step(f"silhouette of {len(self.partitions)} partitions on "
                             f"{silhouette_scope(len(self.x))}"):
            groups: dict[bytes, list[str]] = {}     # one distance pass per set of rows (normally one set)
            for key, (ids, _) in self.partitions.items():
                groups.setdefault(ids.tobytes(), []).append(key)
            for keys in groups.values():
                ids = self.partitions[keys[0]][0]
                got = silhouettes(self.x[ids], {key: self.partitions[key][1] for key in keys})
                for key, s in got.items():
                    self.rows[key]["silhouette"] = s
        return self.rows


def silhouette(x: np.ndarray, labels: np.ndarray, seed: int = 0) -> float | None:
    """scikit-learn's silhouette of one partition on ≤ SILHOUETTE_SAMPLE rows (seed selection's figure)."""
    from sklearn.metrics import silhouette_score
    if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= len(x):
        return None
    n = min(SILHOUETTE_SAMPLE, len(x))
    return float(silhouette_score(x, labels, sample_size=n if n < len(x) else None, random_state=seed))


def announce(clock: ReportClock, n: int, d: int, k: int, which, skip=(), extra_ops: float = 0.0, hint: str = "",
             device="cpu") -> float:
    """Estimate the report's cost (baselines, silhouettes, `extra_ops` multiply-adds) and say it if over a minute."""
    fits = plan(n, k, which, skip)
    m = min(n, SAMPLE)
    ops = extra_ops + m * m * (d + 4 * (len(fits) + 2))
    rate = gemm_rate(device)
    seconds = estimate_seconds(fits, n, d, k, rate) + 3 * ops / rate
    spectral = [b for b in fits if b.algo == "spectral" and b.rows < n]
    clock.estimate(seconds, f"{len(fits)} baseline fits on N={n:,} × {d}"
                            f"{f', Spectral on a {spectral[0].rows:,}-row sample' if spectral else ''}, silhouette "
                            f"on {silhouette_scope(n)}", hint)
    return seconds


def baseline_rows(x: np.ndarray, y: np.ndarray | None, k: int, nmi_average: str = "arithmetic",
                  baselines=("kmeans", "spectral"), neighbors: int = 10) -> dict[str, dict]:
    t = TableRows(x, y, k, nmi_average)
    t.add_baselines(baselines, neighbors)
    return t.finish()


def score_row(labels, x: np.ndarray, y: np.ndarray | None, nmi_average: str, name: str = "", **extra) -> dict:
    """One partition's row (label-free figures always; ACC/NMI/ARI when labels y are known)."""
    t = TableRows(x, y, len(np.unique(labels)), nmi_average)
    t.add("row", name, labels, **extra)
    return t.finish()["row"]


def mark_beaten(rows: dict[str, dict], method_keys) -> None:
    """Each method row gets `beaten_by`: the baselines with a higher ACC (labelled data only)."""
    for key in method_keys:
        r = rows.get(key)
        if r is None or "acc" not in r:
            continue
        r["beaten_by"] = [b for b, br in rows.items() if b not in method_keys and br.get("acc", -1) > r["acc"]]


def _f(v, width=7, digits=4):
    return f"{v:{width}.{digits}f}" if isinstance(v, (int, float)) and v is not None else f"{'-':>{width}}"


def format_table(rows: dict[str, dict], title: str, names: dict | None = None, notes=(NOTE,)) -> str:
    """names: display names of rows without a `name` (default: the row's key)."""
    names = names or {}
    cells = [(r.get("name") or names.get(key, key), r.get("clustered", ""), r.get("input", ""))
             for key, r in rows.items()]
    w = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(("method", "clustered", "input"))]
    lines = [title, f"{'method':<{w[0]}}  {'clustered':<{w[1]}}  {'input':<{w[2]}} {'rows':>7} {'ACC':>7} {'NMI':>7} "
                    f"{'ARI':>7} {'silh.':>7} {'used':>5} {'time (s)':>9}"]
    for (name, what, form), r in zip(cells, rows.values()):
        mark = f"  < beaten by {', '.join(SHORT.get(b, b) for b in r['beaten_by'])}" if r.get("beaten_by") else ""
        lines.append(f"{name:<{w[0]}}  {what:<{w[1]}}  {form:<{w[2]}} {r.get('rows', '-'):>7} {_f(r.get('acc'))} "
                     f"{_f(r.get('nmi'))} {_f(r.get('ari'))} {_f(r.get('silhouette'))} "
                     f"{r.get('clusters_used', '-'):>5} {_f(r.get('time_s'), 9, 1)}{mark}")
    return "\n".join(lines + list(notes))


def title_line(method: str, data_name: str, n: int, k: int, labelled: bool, split: str, nmi_average: str,
               world_size: int = 1) -> str:
    """The one title of every method's table: data name, N, k, world size, split, labels, silhouette sample."""
    labels = (f"NMI {nmi_average}{' (scikit-learn default)' if nmi_average == 'arithmetic' else ''}" if labelled
              else "no labels: ACC/NMI/ARI not computed")
    return (f"{method} on '{data_name}': N={n}, k={k}, world size {world_size}, {split}; {labels}; "
            f"silhouette on {silhouette_scope(n)}")


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
