#!/usr/bin/env python
"""The quickstart job: CgMCR² on scikit-learn's digits, 2 processes under DeepSpeed (CPU + gloo here).

Writes the digits shards, trains, evaluates every epoch, checkpoints, and prints the final table beside
scikit-learn's KMeans and SpectralClustering on the same inputs. Extra `key=value` arguments override the
recipe; `--nproc N` sets the number of processes.
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str]) -> int:
    nproc = 2
    if "--nproc" in argv:
        i = argv.index("--nproc")
        nproc, argv = int(argv[i + 1]), argv[:i] + argv[i + 2:]
    run_dir = os.path.join(ROOT, "runs", time.strftime("demo-%Y%m%d-%H%M%S"))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--nproc_per_node", str(nproc), os.path.join(ROOT, "recipes", "cgmcr2_digits.py"),
           f"run_dir={run_dir}", *argv]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not _has_cuda():
        env.setdefault("DS_ACCELERATOR", "cpu")
    print("running:", " ".join(cmd), flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd, env=env, cwd=ROOT)
    if rc != 0:
        return rc
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    print(f"\nrun directory: {run_dir}  (config.yaml, metrics.jsonl, summary.json, checkpoints/, figures/)")
    table = summary.get("metrics", {}).get("table") or summary.get("table")
    if isinstance(table, str):
        print(table)
    print(f"wall time: {time.time() - t0:.1f} s")
    return 0


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
