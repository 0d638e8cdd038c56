"""python -m dist_cluster.bench [cases...] [--quick] [--procs 1 2] [--repeats 3] [--threads 2] [--remote]
[--device cpu|cuda]"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from dist_cluster.bench import report
from dist_cluster.bench.registry import CASES, GPU_CASES, Options, Row, load_for


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dist_cluster.bench",
                                description=sys.modules["dist_cluster.bench"].__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", nargs="*", help=f"any of {', '.join(CASES)} (default: all)")
    p.add_argument("--quick", action="store_true", help="small inputs, exactness checks (under 3 minutes)")
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or min(os.cpu_count() or 1, 2)),
                   help="threads in all (default: OMP_NUM_THREADS, else up to 2)")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--remote", action="store_true", help="data: shards through a throttled pipe")
    p.add_argument("--rate", default="50m", help="data --remote: pipe bandwidth (bytes/s, k/m suffix)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help=f"cuda: {', '.join(GPU_CASES)} on one GPU beside plain torch loops and faiss-gpu")
    args = p.parse_args(argv)
    allowed = GPU_CASES if args.device == "cuda" else CASES
    unknown = [c for c in args.cases if c not in allowed]
    if unknown:
        p.error(f"unknown case(s) {unknown} for --device {args.device}; choose from {list(allowed)}")
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA device (torch.cuda.is_available() is False)")
    opts = Options(quick=args.quick, procs=tuple(args.procs), repeats=1 if args.quick else args.repeats,
                   threads=args.threads, out=args.out, remote=args.remote, rate=args.rate, device=args.device)
    rows: list[Row] = []
    failed = []
    t0 = time.time()
    for name in args.cases or list(allowed):
        t = time.time()
        try:
            got = load_for(name, opts.device).run(opts)
        except Exception:
            traceback.print_exc()
            got = [Row(name, "case raised (traceback above)", "-", float("nan"), exact=False)]
        rows += got
        report.append_jsonl(got, opts.out, opts.quick)
        print(f"[{name}: {time.time() - t:.0f} s]", flush=True)
        failed += [r for r in got if r.exact is False]
    where = f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {report.cpu_summary()}"
    if opts.device == "cuda":
        import torch
        where = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    print(f"\n{'quick: exactness only' if opts.quick else 'median of %d' % opts.repeats}, {where}, "
          f"total {time.time() - t0:.0f} s")
    print(report.table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
