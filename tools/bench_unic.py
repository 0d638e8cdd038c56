"""UNIC benchmark on Fashion-MNIST EfficientNet-Lite0 features: neighbour purity, clustering against the
classical baselines and the plain neighbour-consistency loss, GCD All/Old/New, and mining time.

    python tools/bench_unic.py                                   # features of the 10k test images (112 px)
    python tools/bench_unic.py --train data/fmnist_effnet_112/train.json --eval data/fmnist_effnet_112/eval.json

Every run uses the method exactly as recipes/unic_fmnist.py builds it (head on frozen features), trained by a
plain Adam + cosine loop in this process (the engine is benchmarked elsewhere). Baselines run on the same
features in the same run. Mining time is measured on all 70,000 images (raw pixels, 784-d) on 1 and 2
processes (gloo).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dist_cluster.distributed import DistEnv  # noqa: E402
from dist_cluster.engine.context import RunContext  # noqa: E402
from dist_cluster.eval import cluster_metrics, gcd_accuracy  # noqa: E402
from dist_cluster.launch import load_recipe  # noqa: E402
from dist_cluster.methods.base import total_loss  # noqa: E402
from dist_cluster.methods.unic.method import UnicMethod  # noqa: E402

DEFAULT = "data/fmnist_effnet_112/eval.json"


class _Quiet:
    def log(self, record, step, kind="train", echo=False):
        pass


def build(args, run_dir: str, seed: int, mode: str = "cluster", **method):
    cfg = load_recipe("unic_fmnist" if mode == "cluster" else "unic_gcd_fmnist")()
    cfg.seed, cfg.run_dir = seed, run_dir
    cfg.data.train, cfg.data.eval = args.train, args.eval or args.train
    cfg.method.epochs, cfg.method.tau1, cfg.method.tau2 = args.epochs, args.tau1, args.tau2
    for k, v in method.items():
        setattr(cfg.method, k, v)
    torch.manual_seed(seed)
    m = UnicMethod(cfg)
    ctx = RunContext(cfg=cfg, env=DistEnv(), run_dir=run_dir, device=torch.device("cpu"), logger=_Quiet())
    return cfg, m, ctx


def train_and_eval(args, run_dir: str, seed: int, mode: str = "cluster", **method) -> tuple[dict, UnicMethod]:
    cfg, m, ctx = build(args, run_dir, seed, mode, **method)
    stage = m.stages()[0]
    m.on_stage_start(stage, ctx, resumed=False)
    loader = m.build_loaders(ctx)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=cfg.optim.lr)
    steps = cfg.method.epochs * loader.batches_per_epoch()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    m.train()
    for epoch in range(cfg.method.epochs):
        for batch in loader.epoch(epoch):
            batch.pop("_skipped", None)
            loss = total_loss(m(batch, stage), stage)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return m.evaluate(ctx), m


def mean_std(rows: list[dict], key: str) -> str:
    v = np.array([r[key] for r in rows], dtype=np.float64)
    return f"{v.mean():.3f} ± {v.std():.3f}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |")


def purity_section(args, run_dir: str) -> None:
    from dist_cluster.neighbors import clean_mask, neighbor_purity
    _, m, ctx = build(args, run_dir, 0)
    t = time.time()
    m.on_stage_start(m.stages()[0], ctx, resumed=False)
    print(f"mining {m.mined.n} samples (tau1={args.tau1}, tau2={args.tau2}): {time.time() - t:.1f} s "
          "(0 if reloaded)")
    res, y = m.mined.res, torch.from_numpy(m.mined.labels)
    curve = m.mined.purity_curve((1, 5, 10, 20, 50))
    table("Neighbour purity vs k (fraction of the k nearest, self excluded, of the anchor's class)",
          ["k", "all anchors", "kept after cleaning (q=0.6)"],
          [[k, f"{b:.3f}", f"{a:.3f}"] for k, b, a in zip(curve["ks"], curve["before"], curve["after"])])
    rows = [["none", "-", "1.000", f"{neighbor_purity(res.positives, y):.3f}"]]
    for q in (0.9, 0.7, 0.6, 0.5, 0.3, 0.1):
        mask, eta = clean_mask(res.union_size, eta_quantile=q)
        rows.append([f"q={q}", f"{eta:.0f}", f"{float(mask.double().mean()):.3f}",
                     f"{neighbor_purity(res.positives, y, None, mask):.3f}"])
    table(f"Positive purity (top-{args.tau1}, self excluded) after second-order cleaning", ["eta", "|U| <=", "kept",
                                                                                        "purity"], rows)
    s = res.stats
    print(f"\nfalse-negative rate of mined negatives (rank >= {args.tau2}): {s['false_negative_rate']:.3f}; "
          f"uniform random pick: {s['same_class_prior']:.3f}; union size p10/p50/p90: "
          + "/".join(f"{float(res.union_size.double().quantile(q)):.0f}" for q in (0.1, 0.5, 0.9)))


def clustering_section(args, run_dir: str) -> None:
    from sklearn.cluster import KMeans, SpectralClustering
    _, m, _ = build(args, run_dir, 0)
    f, y, _ = m.data().eval_arrays()
    x, y = f.numpy(), y.numpy()
    rows = []
    km = [cluster_metrics(y, KMeans(10, n_init=10, random_state=s).fit_predict(x)) for s in args.seeds]
    rows.append(["KMeans (sklearn, n_init=10)", *(mean_std(km, k) for k in ("acc", "nmi", "ari"))])
    if not args.no_spectral:
        sc = [cluster_metrics(y, SpectralClustering(10, affinity="nearest_neighbors", n_neighbors=10,
                                                    random_state=s, assign_labels="cluster_qr").fit_predict(x))
              for s in args.seeds]
        rows.append(["SpectralClustering (10-NN graph)", *(mean_std(sc, k) for k in ("acc", "nmi", "ari"))])
    variants = [("plain neighbour consistency (pos + ent, no cleaning)", dict(eta_quantile=0.0, lambda_neg=0.0)),
                ("UNIC without cleaning (pos + neg + ent)", dict(eta_quantile=0.0)),
                (f"UNIC (cleaning at q={args.eta_quantile}, pos + neg + ent)", dict(eta_quantile=args.eta_quantile))]
    for name, kw in variants:
        t = time.time()
        runs = [train_and_eval(args, run_dir, s, **kw)[0] for s in args.seeds]
        used = min(r["clusters_used"] for r in runs)
        rows.append([f"{name}", *(mean_std(runs, k) for k in ("acc", "nmi", "ari"))])
        print(f"  {name}: {(time.time() - t) / len(runs):.0f} s per seed, clusters used >= {used:.0f}", flush=True)
    table(f"Clustering, {len(y)} images, seeds {list(args.seeds)} (mean ± std)", ["method", "ACC", "NMI", "ARI"],
          rows)


def gcd_section(args, run_dir: str) -> None:
    from sklearn.cluster import KMeans
    rows = []
    old = (0, 1, 2, 3, 4)
    gcd, free, km = [], [], []
    for s in args.seeds:
        g, m = train_and_eval(args, run_dir, s, mode="gcd", eta_quantile=args.eta_quantile)
        gcd.append(g)
        du = ~m.labelled.mask
        f, y, _ = m.data().train_arrays()
        x_u, y_u = f.numpy()[du], y.numpy()[du]
        km.append(gcd_accuracy(y_u, KMeans(10, n_init=10, random_state=s).fit_predict(x_u), old))
        c, mc = train_and_eval(args, run_dir, s, mode="cluster", eta_quantile=args.eta_quantile)
        if args.eval and args.eval != args.train:
            continue                         # label-free run evaluated on another split: not comparable
        yt, pt = mc._last_eval
        free.append(gcd_accuracy(yt[du], pt[du], old))
    rows.append(["KMeans on D_U features", *(mean_std(km, k) for k in ("all", "old", "new"))])
    if free:
        rows.append(["UNIC label-free, same D_U", *(mean_std(free, k) for k in ("all", "old", "new"))])
    rows.append(["UNIC GCD (v2: one Hungarian)", *(mean_std(gcd, k) for k in ("all", "old", "new"))])
    rows.append(["UNIC GCD (v1: separate Hungarians)", *(mean_std(gcd, f"v1_{k}") for k in ("all", "old", "new"))])
    table(f"GCD: old = classes 0-4 (50% labelled), new = 5-9, K = 10; accuracy on D_U, seeds {list(args.seeds)}",
          ["method", "All", "Old", "New"], rows)


def _mine_on_rank(rank, world, x, tau1, tau2, out):
    from dist_cluster.neighbors import mine_neighbors
    n = len(x)
    rows = torch.arange(rank, n, world)
    torch.distributed.barrier()
    t = time.time()
    res = mine_neighbors(x[rows], tau1, tau2, index=rows, eta_quantile=0.6, keep_features=False)
    torch.distributed.barrier()
    if rank == 0:
        torch.save({"time": time.time() - t, "positives": res.positives, "clean": res.clean}, out)


def _spawned(rank, world, port, fn, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    finally:
        torch.distributed.destroy_process_group()


def mining_time_section(args) -> None:
    import socket

    from dist_cluster.data.sources import fmnist_source
    x = torch.from_numpy(np.concatenate([fmnist_source(s).images for s in ("train", "test")]).reshape(70000, -1)
                         .astype(np.float32) / 255.0)
    rows, results = [], {}
    for world in (1, 2):
        with tempfile.TemporaryDirectory() as d, socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            sock.close()
            out = os.path.join(d, "r.pt")
            t = time.time()
            torch.multiprocessing.start_processes(_spawned, args=(world, port, _mine_on_rank,
                                                                  (x, args.tau1, args.mine_tau2, out)),
                                                  nprocs=world, start_method="spawn")
            r = torch.load(out, weights_only=True)
            results[world] = r
            rows.append([world, f"{r['time']:.1f}", f"{time.time() - t:.1f}"])
    same = torch.equal(results[1]["positives"], results[2]["positives"]) and torch.equal(results[1]["clean"],
                                                                                         results[2]["clean"])
    table(f"Mining time, 70,000 Fashion-MNIST images (784-d pixels), tau1={args.tau1}, tau2={args.mine_tau2}, "
          f"L2, exact; {os.cpu_count()} cores", ["processes", "mining s", "wall s (incl. start)"], rows)
    print(f"2-process neighbour lists and clean mask identical to 1 process: {same}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default=DEFAULT, help="feature manifest mined and trained on")
    p.add_argument("--eval", default="", help="feature manifest evaluated on (default: --train, transductive)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--tau1", type=int, default=10)
    p.add_argument("--tau2", type=int, default=1000)
    p.add_argument("--eta-quantile", type=float, default=0.6)
    p.add_argument("--mine-tau2", type=int, default=1000, help="tau2 of the 70,000-sample timing")
    p.add_argument("--sections", nargs="+", default=["purity", "clustering", "gcd", "time"])
    p.add_argument("--no-spectral", action="store_true")
    p.add_argument("--run-dir", default="runs/bench_unic", help="mining files are cached here")
    args = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.time()
    if "purity" in args.sections:
        purity_section(args, args.run_dir)
    if "clustering" in args.sections:
        clustering_section(args, args.run_dir)
    if "gcd" in args.sections:
        gcd_section(args, args.run_dir)
    if "time" in args.sections:
        mining_time_section(args)
    print(f"\ntotal {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
