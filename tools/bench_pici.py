"""PICI benchmark (issue 10): ACC/NMI/ARI after the CPU-sized schedule beside KMeans on raw pixels and on the
MAE-only encoder's features (the paper's ablation order), SPEC P8's behavioural checks, and training images/s
on 1 and 2 processes. Everything runs through the recipes, as a user would run them.

    python tools/bench_pici.py                              # Fashion-MNIST, first 10,000 training images
    python tools/bench_pici.py --data digits
    python tools/bench_pici.py --reuse                      # tables from a finished run in --run-dir
    python tools/bench_pici.py --data digits --set method.train_epochs=10   # recipe overrides for every run
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dist_cluster.checkpoint import complete_tags, read_meta  # noqa: E402
from dist_cluster.checkpoint.export import consolidated_state_dict  # noqa: E402
from dist_cluster.eval import cluster_metrics  # noqa: E402
from dist_cluster.launch import build_config, load_recipe  # noqa: E402


def launch(recipe: str, overrides: list[str], nproc: int = 1, threads: int = 1, log: str | None = None) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), DS_ACCELERATOR="cpu")
    cmd = [sys.executable] if nproc == 1 else [os.path.join(os.path.dirname(sys.executable), "torchrun"),
                                               "--nproc_per_node", str(nproc), "--master_port", "29731"]
    t0 = time.time()
    with open(log or os.devnull, "w") as f:
        res = subprocess.run(cmd + [os.path.join(ROOT, "recipes", f"{recipe}.py"), *overrides], env=env, cwd=ROOT,
                             stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise SystemExit(f"{recipe} {' '.join(overrides)} failed (exit {res.returncode}); see {log}")
    return time.time() - t0


def records(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def epoch_means(recs, key: str, stage: str) -> list[float]:
    by_epoch: dict[int, list[float]] = {}
    for r in recs:
        if r["kind"] == "train" and r.get("stage") == stage and key in r:
            by_epoch.setdefault(r["epoch"], []).append(r[key])
    return [float(np.mean(v)) for _, v in sorted(by_epoch.items())]


def last_eval(recs, stage: str) -> dict:
    evals = [r for r in recs if r["kind"] == "eval" and r.get("stage") == stage and "acc" in r]
    return evals[-1] if evals else {}


@torch.no_grad()
def features(cfg, state: dict, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """CLS features ("h") or instance features ("z") of the transductive evaluation images, unmasked."""
    from dist_cluster.data import build
    from dist_cluster.data.prepare import prepare
    from dist_cluster.methods.pici.method import PICI
    method = PICI(cfg)
    method.net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    method.eval()
    d = cfg.data
    loader = build.build_eval_loader(dataclasses.replace(d, eval_samples=d.train_samples), prepare(d)["train"],
                                     rank=0, world_size=1)
    feats, labels = [], []
    for b in loader:
        feats.append(method.net(b["image"], 0.0)[key])
        labels.append(b["label"])
    return torch.cat(feats), torch.cat(labels)


def kmeans_row(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> dict:
    from sklearn.cluster import KMeans
    return cluster_metrics(y, KMeans(k, n_init=10, random_state=seed).fit_predict(x))


def raw_pixels(cfg) -> tuple[np.ndarray, np.ndarray]:
    from dist_cluster.data.sources import digits_source, fmnist_source
    src = fmnist_source("train", cfg.data.source) if cfg.data.name == "fmnist" else digits_source()
    n = cfg.data.train_samples or len(src)
    return src.images[:n].reshape(n, -1).astype(np.float64), src.labels[:n]


def quality(args, recipe: str, run_dir: str) -> None:
    overrides = [f"run_dir={run_dir}", "ckpt.keep_last=1000", "ckpt.save_at_epoch_end=true", "engine.log_every=1",
                 "engine.eval_every=1", "engine.progress=false", *args.set]
    if not (args.reuse and os.path.exists(os.path.join(run_dir, "summary.json"))):
        wall = launch(recipe, overrides, threads=args.threads, log=run_dir + ".log")
        print(f"trained {recipe} in {wall:.0f} s ({run_dir})")
    cfg = build_config(load_recipe(recipe), overrides)
    recs, k, seed = records(run_dir), cfg.method.num_clusters, cfg.seed
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    mae_tag = [t for t in complete_tags(ckpt_dir) if read_meta(ckpt_dir, t).get("stage_index") == 0][-1]
    x, y = raw_pixels(cfg)
    h_mae, y_mae = features(cfg, consolidated_state_dict(run_dir, mae_tag), "h")
    z_end, _ = features(cfg, consolidated_state_dict(run_dir), "z")
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    rows = [("KMeans, raw pixels", kmeans_row(x, y, k, seed)),
            ("KMeans, MAE-only encoder [CLS] (end of stage 1)", kmeans_row(h_mae.numpy(), y_mae.numpy(), k, seed)),
            ("PICI cluster head, end of stage 2 (PISD + PICD)", last_eval(recs, "train")),
            ("PICI cluster head, end of stage 3 (+ CLI) = final", summary["metrics"]),
            ("KMeans, final instance features z", kmeans_row(z_end.numpy(), y_mae.numpy(), k, seed))]
    n = len(y)
    print(f"\n### Clustering quality, {cfg.data.name}, {n} images (transductive), {recipe} schedule "
          f"{cfg.method.pretrain_epochs}/{cfg.method.train_epochs}/{cfg.method.boost_epochs} epochs\n")
    print("| method | ACC | NMI | ARI |\n|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r.get('acc', float('nan')):.3f} | {r.get('nmi', float('nan')):.3f} | "
              f"{r.get('ari', float('nan')):.3f} |")
    checks(recs, summary, k)
    recon = [p for p in summary.get("figures", []) if "reconstruction" in p]
    print(f"\nfigures: {', '.join(summary.get('figures', []))}\nreconstruction figure: {recon[0] if recon else '-'}")


def checks(recs, summary, k: int) -> None:
    pisd = epoch_means(recs, "loss/pisd", "pretrain")
    ins = epoch_means(recs, "loss/ins", "train")
    s2, fin = last_eval(recs, "train"), summary["metrics"]
    boost_start = [r for r in recs if r["kind"] == "boost" and "cli/nmi_pseudo_head_a" in r]
    nmi0 = boost_start[0]["cli/nmi_pseudo_head_a"] if boost_start else float("nan")
    rows = [("stage 1: last-epoch L_PISD < 0.8 x first-epoch mean", f"{pisd[-1]:.3f} vs {pisd[0]:.3f}",
             pisd[-1] < 0.8 * pisd[0]),
            ("stage 2: L_ins falls (epoch means)", f"{ins[0]:.3f} -> {ins[-1]:.3f}", ins[-1] < ins[0]),
            ("stage 2: all clusters non-empty at eval", f"{s2.get('clusters_nonempty')}/{k}",
             s2.get("clusters_nonempty") == k),
            ("stage 2: marginal entropy >= 0.9 log M (hard / soft)",
             f"{s2.get('pred_entropy', 0):.3f} / {s2.get('marginal_entropy', 0):.3f} vs {0.9 * math.log(k):.3f}",
             s2.get("pred_entropy", 0) >= 0.9 * math.log(k)),
            ("stage 3: NMI(pseudo-labels, head argmax) rises", f"{nmi0:.3f} -> {fin.get('nmi_pseudo_head', 0):.3f}",
             fin.get("nmi_pseudo_head", 0) > nmi0),
            ("stage 3: ACC >= end of stage 2 - 0.02", f"{fin['acc']:.3f} vs {s2.get('acc', 0):.3f}",
             fin["acc"] >= s2.get("acc", 0) - 0.02),
            ("end to end: ACC >= 0.30 and NMI >= 0.20", f"{fin['acc']:.3f} / {fin['nmi']:.3f}",
             fin["acc"] >= 0.30 and fin["nmi"] >= 0.20)]
    print("\n### SPEC P8 behavioural checks\n\n| check | measured | pass |\n|---|---|---|")
    for name, measured, ok in rows:
        print(f"| {name} | {measured} | {'yes' if ok else 'NO'} |")


def throughput(args, recipe: str, out_dir: str) -> None:
    """Images/s (each image = two views) in stage 2, the costliest stage, at the same global batch of 96."""
    print("\n### Training throughput, stage 2 (MAE decoder + both heads), global batch 96\n")
    print("| processes x threads | images/s | s/step |\n|---|---|---|")
    for nproc, threads in args.procs:
        run_dir = os.path.join(out_dir, f"throughput_{nproc}x{threads}")
        ov = [f"run_dir={run_dir}", "method.pretrain_epochs=0", "method.boost_epochs=0", "method.train_epochs=2",
              f"data.batch_size={96 // nproc}", f"engine.max_steps={args.steps}", "engine.log_every=1",
              "engine.eval_every=0", "ckpt.save_at_epoch_end=false", "ckpt.resume=false", "method.recon_images=0",
              "method.tsne_samples=0", "data.train_samples=3000", "engine.progress=false", *args.set]
        launch(recipe, ov, nproc, threads, log=run_dir + ".log")
        t = {r["step"]: r["time"] for r in records(run_dir) if r["kind"] == "train"}
        first = 5
        sec = (t[args.steps] - t[first]) / (args.steps - first)
        print(f"| {nproc} x {threads} | {96 / sec:.0f} | {sec:.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("fmnist", "digits"), default="fmnist")
    p.add_argument("--run-dir", default="")
    p.add_argument("--reuse", action="store_true", help="use a finished run in --run-dir instead of training")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the quality run")
    p.add_argument("--steps", type=int, default=30, help="steps of each throughput run")
    p.add_argument("--procs", type=lambda s: tuple(int(v) for v in s.split("x")), nargs="*",
                   default=[(1, 1), (1, 2), (2, 1)], help="processes x threads of the throughput runs")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra recipe overrides for every run")
    args = p.parse_args()
    recipe = f"pici_{args.data}"
    run_dir = os.path.abspath(args.run_dir or os.path.join(ROOT, "runs", f"bench_{recipe}"))
    os.makedirs(os.path.dirname(run_dir), exist_ok=True)
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)      # the recipes' data.root is relative to the repository
    quality(args, recipe, run_dir)
    if not args.skip_throughput:
        throughput(args, recipe, os.path.dirname(run_dir))


if __name__ == "__main__":
    main()
