"""python -m dist_cluster.cluster DATA --method {cgmcr2,unic,pici,kmeans} --k K [--labels FILE] [--n-init N]
[--select {silhouette,consensus,loss}] [--run-dir DIR] [key=value ...]
(also under torchrun: torchrun --nproc_per_node 2 -m dist_cluster.cluster ...)

Shards DATA once (cached by content hash under --data-root), sizes the method's recipe to it, trains through
the normal launcher path and writes, in the run directory: clusters.csv (index, cluster, confidence),
results_table.{json,md} and figures/results_table.png, summary.json, plus the usual run files.

`key=value` overrides reach the method's recipe; a key this command sets from its options or from DATA
(run_dir, seed, data.train, data.eval, the cluster count, ...) is refused before anything is written, naming
the option to use instead, and so is every override with --method kmeans (which trains nothing).
"""
from __future__ import annotations

import argparse
import os
import sys

from dist_cluster.cluster.arrays import InputError, check_k
from dist_cluster.cluster.configs import METHODS
from dist_cluster.cluster.selection import DEFAULT_RULE, RULES

# Set by this command from its options or DATA: as overrides they would reach the training config but not the
# report (or crash it after training), so they are refused with what to use instead.
NOT_OVERRIDES = {
    "run_dir": "use --run-dir DIR",
    "seed": "use --seed N (and --n-init N for several seeds)",
    "data": "pass the data as DATA",
    "data.train": "pass the data as DATA",
    "data.eval": "clusters.csv and the table cover DATA itself (clustering is transductive); for a separate "
                 "evaluation split run a recipe with data.eval=",
    "method.k": "use --k K",
    "method.num_clusters": "use --k K",
    "method.target": "this command sets it (the class that writes the predictions)",
    "method.baselines": "use --baselines none|kmeans|all",
}


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m dist_cluster.cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help=".npy/.npz/.pt feature array, folder of images, or manifest .json")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the method's recipe "
                                                "(e.g. method.finetune_epochs=10)")
    p.add_argument("--method", choices=METHODS, default="cgmcr2")
    p.add_argument("--k", type=int, required=True, help="number of clusters")
    p.add_argument("--labels", help="labels file (.npy/.npz/.pt), optional")
    p.add_argument("--features-key", help="array name of the features in an .npz/.pt")
    p.add_argument("--labels-key", help="array name of the labels in an .npz/.pt")
    p.add_argument("--n-init", type=int, default=1, help="seeds to train; --select says which is kept")
    p.add_argument("--select", choices=list(RULES), default=DEFAULT_RULE,
                   help="which of the --n-init seeds is kept (label-free): " +
                        "; ".join(f"{k}: {v}" for k, v in RULES.items()) + f" (default {DEFAULT_RULE})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", help="default runs/<method>_<data name>")
    p.add_argument("--cache-dir", "--data-root", dest="data_root", metavar="DIR",
                   help="where DATA is sharded and cached (default $DIST_CLUSTER_CACHE, else "
                        "$XDG_CACHE_HOME/dist_cluster or ~/.cache/dist_cluster; --data-root is an alias)")
    p.add_argument("--nmi", default="arithmetic", choices=["arithmetic", "geometric"], help="NMI normalisation")
    p.add_argument("--baselines", default="all", choices=["none", "kmeans", "all"],
                   help="the table's baseline rows: none, KMeans only, or KMeans and spectral clustering (default)")
    return p.parse_intermixed_args(argv)


def check_overrides(method: str, overrides: list[str]) -> None:
    """Refuse a `key=value` this command would not honour (fast: before DATA is read or anything written)."""
    for arg in overrides:
        key = arg.split("=", 1)[0].strip()
        if "=" not in arg or not key:
            raise InputError(f"expected key=value, got {arg!r}")
        if key in NOT_OVERRIDES:
            raise InputError(f"{arg!r} is not honoured by this command: {NOT_OVERRIDES[key]}")
        if method == "kmeans":
            raise InputError(f"{arg!r}: --method kmeans trains nothing, so it takes no key=value overrides "
                             "(its options: --k, --seed, --run-dir, --nmi, --baselines)")


def plan(argv: list[str], world_size: int = 1):
    """Parse, shard DATA (cached), size the config and check everything a run needs, before any training:
    (args, data, run_dir, overrides). Raises InputError or ConfigError with the user's message."""
    from dist_cluster.cluster.configs import method_config
    from dist_cluster.cluster.inputs import image_features, resolve_data
    args = parse(argv)
    check_overrides(args.method, args.overrides)
    for o in args.overrides:
        if o.startswith("method.nmi_average="):    # the CLI's own table follows the method's setting
            args.nmi = o.split("=", 1)[1]
    data = resolve_data(args.data, args.data_root, args.labels, args.features_key, args.labels_key)
    if data.kind == "image" and args.method != "pici":
        data = image_features(data, args.data_root)
    check_k(args.k, data.n)
    if args.n_init < 1:
        raise InputError(f"--n-init must be at least 1, got {args.n_init}")
    run_dir = os.path.abspath(args.run_dir or os.path.join("runs", f"{args.method}_{data.name}"))
    from dist_cluster.engine.rundir import check_writable
    check_writable(run_dir, "run directory")      # before training, not when the results are written
    overrides = list(args.overrides)
    if args.method != "kmeans":
        if not any(o.startswith("method.nmi_average=") for o in overrides):
            overrides.append(f"method.nmi_average={args.nmi}")
        if args.method == "cgmcr2":          # CgMCR²'s own end-of-run report computes its baselines
            from dist_cluster.cluster.baselines import CHOICES
            overrides.append(f"method.baselines=[{','.join(CHOICES[args.baselines])}]")
        method_config(args.method, data, args.k, overrides, run_dir, world_size)   # bad overrides fail here
    return args, data, run_dir, overrides


def main(argv=None) -> dict | None:
    """A user's mistake ends as one `error:` line and exit code 2 (`--debug` / DIST_CLUSTER_DEBUG=1: traceback)."""
    from dist_cluster.errors import UserError, debug_requested, exit_with
    debug, argv = debug_requested(sys.argv[1:] if argv is None else list(argv))
    try:
        return _main(argv)
    except UserError as e:
        exit_with(e, debug)


def _main(argv) -> dict | None:
    from dist_cluster.cluster.report import write_report
    from dist_cluster.cluster.run import select, selection_report, train_seeds
    from dist_cluster.distributed import resolve
    from dist_cluster.launch import strip_launcher_args
    env = resolve()
    args, data, run_dir, overrides = plan(strip_launcher_args(argv), env.world_size)
    if args.method == "kmeans":
        if not env.is_main:
            return None
        from dist_cluster.cluster.kmeans_run import kmeans_method
        from dist_cluster.cluster.report import inputs_for_table
        x, _, index = inputs_for_table(data)
        runs = [kmeans_method(x, args.k, args.seed, run_dir, index=index)]
    else:
        runs = train_seeds(args.method, data, args.k, overrides, run_dir, args.n_init, args.seed, env.world_size)
    if not env.is_main:
        return None
    best = select(runs, args.select)
    return write_report(args.method, data, args.k, runs, best, selection_report(runs, best, args.select), run_dir,
                        args.seed, args.nmi, env.world_size, baselines=args.baselines)


if __name__ == "__main__":
    main()
