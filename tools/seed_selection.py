"""Which label-free rule should `--n-init` use to keep a seed? Measured on the project's labelled sets.

    OMP_NUM_THREADS=1 python tools/seed_selection.py [--seeds 5] [--out runs/seed_selection]

Trains every case's seeds through the CLI's own path (dist_cluster.cluster.run.train_seeds, short schedules:
4.9 CPU minutes, 10.6 min wall on a shared 2-core machine), then scores each rule of
dist_cluster.cluster.selection by the ACC of the seed it keeps: above the seeds' median, the best, and over
every 3-seed subset (what `--n-init 3` would have seen) how often it keeps the subset's best. Writes
<out>/seed_selection.{json,md}; the README's table is the .md. Run it once; the tests never do.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time

import numpy as np

CGMCR2 = ["method.warmup_epochs=5", "method.finetune_epochs=15", "method.baselines=()"]
UNIC = ["method.epochs=10", "engine.eval_every=0"]
PICI = ["method.pretrain_epochs=2", "method.train_epochs=6", "method.boost_epochs=2", "engine.eval_every=0",
        "method.tsne_samples=0"]
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


def write_pngs(images: np.ndarray, labels: np.ndarray, folder: str) -> str:
    from PIL import Image
    if os.path.isdir(folder):
        return folder
    for i, (img, y) in enumerate(zip(images, labels)):
        os.makedirs(os.path.join(folder, str(y)), exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(os.path.join(folder, str(y), f"{i:05d}.png"))
    return folder


def datasets(work: str, fmnist_n: int) -> dict:
    """name → UserData: digits (features and 8×8 images), Fashion-MNIST test images' EfficientNet-Lite0
    features (the CLI's image path), and the test suite's uneven-scale blobs."""
    from sklearn.datasets import load_digits, make_blobs

    from dist_cluster.cluster.inputs import image_features, resolve_data
    root = os.path.join(work, "data")
    os.makedirs(root, exist_ok=True)
    d = load_digits()
    np.save(os.path.join(work, "digits_X.npy"), d.data)
    np.save(os.path.join(work, "digits_y.npy"), d.target)
    out = {"digits": resolve_data(os.path.join(work, "digits_X.npy"), root, os.path.join(work, "digits_y.npy")),
           "digits images": resolve_data(write_pngs(d.images * 255 / 16, d.target, os.path.join(work, "digits_png")),
                                         root)}
    x, y = make_blobs(n_samples=300, centers=4, n_features=6, cluster_std=2.5, random_state=0)
    np.save(os.path.join(work, "blobs_X.npy"), (x * np.arange(1, 7)).astype(np.float32))
    np.save(os.path.join(work, "blobs_y.npy"), y)
    out["blobs"] = resolve_data(os.path.join(work, "blobs_X.npy"), root, os.path.join(work, "blobs_y.npy"))
    if os.path.isdir(FMNIST_DIR):
        from dist_cluster.data.sources import read_idx
        imgs = read_idx(os.path.join(FMNIST_DIR, "t10k-images-idx3-ubyte.gz"))[:fmnist_n]
        labels = read_idx(os.path.join(FMNIST_DIR, "t10k-labels-idx1-ubyte.gz"))[:fmnist_n]
        folder = write_pngs(imgs, labels, os.path.join(work, f"fmnist_{fmnist_n}_png"))
        out[f"F-MNIST {fmnist_n} (EffNet-Lite0)"] = image_features(resolve_data(folder, root), root)
    return out


def score_case(runs) -> dict:
    from dist_cluster.cluster.selection import RULES, pick, rule_scores
    acc = np.array([r.metrics["acc"] for r in runs])
    losses = [r.loss for r in runs]
    scores = {rule: rule_scores(runs, rule) for rule in RULES}
    out = {"acc": acc.tolist(), "losses": losses, "scores": scores, "rules": {}}
    for rule, sc in scores.items():
        i = pick(sc, losses)
        trios = list(itertools.combinations(range(len(runs)), 3))
        best3 = sum(acc[t[pick([sc[j] for j in t], [losses[j] for j in t])]] == acc[list(t)].max() for t in trios)
        out["rules"][rule] = {"seed": runs[i].seed, "acc": float(acc[i]),
                              "above_median": bool(acc[i] > np.median(acc)), "best": bool(acc[i] == acc.max()),
                              "best_of_3": int(best3), "trios": len(trios)}
    return out


def markdown(results: dict, seeds: int, cpu_s: float, wall_s: float) -> str:
    from dist_cluster.cluster.selection import RULES
    head = "| data | method | ACC of the seeds | " + " | ".join(RULES) + " |\n|---|---|---|" + "---|" * len(RULES)
    lines = [head]
    for case, r in results.items():
        data, method = case.split(" / ")
        cells = [f"{r['rules'][k]['acc']:.3f}{' ✓' if r['rules'][k]['above_median'] else ''}" for k in RULES]
        lines.append(f"| {data} | {method} | {' '.join(f'{a:.3f}' for a in sorted(r['acc'], reverse=True))} | "
                     + " | ".join(cells) + " |")
    above = {k: sum(r["rules"][k]["above_median"] for r in results.values()) for k in RULES}
    best3 = {k: (sum(r["rules"][k]["best_of_3"] for r in results.values()),
                 sum(r["rules"][k]["trios"] for r in results.values())) for k in RULES}
    lines.append(f"| **above the median** | | of {len(results)} cases | "
                 + " | ".join(f"**{above[k]}**" for k in RULES) + " |")
    lines.append("| **best of 3 seeds** | | every 3 of the seeds | "
                 + " | ".join(f"{b}/{n}" for b, n in best3.values()) + " |")
    return "\n".join(lines) + f"\n\n{seeds} seeds per case; {cpu_s / 60:.1f} CPU min, {wall_s / 60:.1f} min wall.\n"


def cpu_seconds() -> float:
    """This process's CPU time and its finished children's (data-loader workers)."""
    import resource
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--fmnist", type=int, default=2000, help="Fashion-MNIST test images used (0: none)")
    p.add_argument("--out", default="runs/seed_selection")
    args = p.parse_args(argv)
    from dist_cluster.cluster.run import train_seeds
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t0, c0 = time.time(), cpu_seconds()
    data = datasets(out, args.fmnist)
    cases = [("digits", "cgmcr2", CGMCR2), ("digits", "unic", UNIC), ("digits images", "pici", PICI),
             ("blobs", "cgmcr2", CGMCR2), ("blobs", "unic", UNIC)]
    cases += [(name, m, o) for name in data if name.startswith("F-MNIST") for m, o in (("cgmcr2", CGMCR2),
                                                                                       ("unic", UNIC))]
    results = {}
    for name, method, overrides in cases:
        k = 4 if name == "blobs" else 10
        rd = os.path.join(out, "runs", f"{name.split()[0]}_{method}")
        os.makedirs(os.path.dirname(rd), exist_ok=True)
        print(f"{name} / {method}: {args.seeds} seeds ...", file=sys.stderr, flush=True)
        with open(rd + ".log", "w") as log, contextlib.redirect_stdout(log):
            runs = train_seeds(method, data[name], k, overrides + ["method.nmi_average=arithmetic"], rd,
                               args.seeds, 0)
        results[f"{name} / {method}"] = score_case(runs)
        print(json.dumps(results[f"{name} / {method}"]["rules"]), file=sys.stderr, flush=True)
    text = markdown(results, args.seeds, cpu_seconds() - c0, time.time() - t0)
    with open(os.path.join(out, "seed_selection.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out, "seed_selection.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
