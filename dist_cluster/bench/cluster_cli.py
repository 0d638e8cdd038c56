"""`python -m dist_cluster.cluster X.npy --labels y.npy --method kmeans --k 10` end to end, as a user runs it,
on synthetic blobs (60,000 × 64 and 200,000 × 128; quick: 1,000 × 16) with a fresh cache, so the wall time
includes start-up, sharding, reading and the k-means fit, then the report (clusters.csv, baselines,
silhouettes, table files; its own total from summary.json's `report`).

Targets: the report adds at most the time of the rest of the run (ratio report ÷ rest ≤ 1), and a 200,000-row
run ends within 5 minutes. Quick: the same data with two --seed values give identical baseline rows (exact).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from dist_cluster.bench.registry import Options, Row

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUDGET_S = 300.0


def blobs(folder: str, n: int, d: int) -> tuple[str, str]:
    from sklearn.datasets import make_blobs
    x, y = make_blobs(n, centers=10, n_features=d, cluster_std=6.0, random_state=0)
    paths = os.path.join(folder, f"X_{n}x{d}.npy"), os.path.join(folder, f"y_{n}x{d}.npy")
    np.save(paths[0], x.astype(np.float32))
    np.save(paths[1], y)
    return paths


def cli(x: str, y: str, folder: str, threads: int, seed: int = 0) -> tuple[float, dict, str]:
    """(wall seconds, summary.json, stdout) of one CLI run with its own fresh cache."""
    run_dir, cache = os.path.join(folder, f"run_{seed}"), os.path.join(folder, f"cache_{seed}")
    cmd = [sys.executable, "-m", "dist_cluster.cluster", x, "--labels", y, "--method", "kmeans", "--k", "10",
           "--seed", str(seed), "--run-dir", run_dir, "--data-root", cache]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"))
    t = time.time()
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - t
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    with open(os.path.join(run_dir, "summary.json")) as f:
        return wall, json.load(f), res.stdout


def baseline_rows(summary: dict) -> dict:
    return {k: {m: v for m, v in r.items() if m != "time_s"} for k, r in summary["table"]["rows"].items()
            if k in ("kmeans", "kmeans_l2", "spectral", "spectral_l2")}


def run(opts: Options) -> list[Row]:
    sizes = [(1000, 16)] if opts.quick else [(60_000, 64), (200_000, 128)]
    rows = []
    for n, d in sizes:
        folder = tempfile.mkdtemp(prefix="bench_cluster_cli_")
        try:
            x, y = blobs(folder, n, d)
            wall, summary, out = cli(x, y, folder, opts.threads)
            print(out[-3000:], flush=True)
            report = summary["report"]["total_s"]
            rest = wall - report
            fit = summary["table"]["rows"]["kmeans_dist_cluster"]["time_s"]
            exact = None
            if opts.quick:          # baselines do not follow the method's seed
                exact = baseline_rows(cli(x, y, folder, opts.threads, seed=1)[1]) == baseline_rows(summary)
            what = f"CLI --method kmeans, blobs {n}×{d}, k=10"
            procs = f"1×{opts.threads}"
            note = (f"report {report:.1f} s = {report / wall:.0%} of {wall:.1f} s; k-means fit {fit:.1f} s; "
                    f"estimate {summary['report']['estimate_s']:.0f} s")
            rows.append(Row("cluster_cli", f"{what}: report", procs, report, "rest of the run", rest,
                            "" if opts.quick else "≤1.0", exact, note))
            rows.append(Row("cluster_cli", f"{what}: total", procs, wall, "5-minute budget", BUDGET_S,
                            "" if opts.quick else "≤1.0"))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return rows
