"""The prepared GPU check: `python tools/gpu_check.py [--out runs/gpu_check/rows.jsonl]` on a machine with a GPU.

Finishes within --budget seconds (230): every row is reported, as ok, FAIL (with its error line) or skipped
(its deadline passed: its processes were killed). Each row is appended to --out (JSON lines) and to the .md
beside it the moment it finishes, so a killed run still reports; the table is printed at the end.
  1. timed rows, alone on the GPU (one worker process, tools/gpu_check_timed.py): kernels (kNN, k-means,
     coding rate) against plain torch; inference FPS at batch 256 the paper's way, with the ratio to resnet50;
     training images/s;
  2. the recipe checks (tools/gpu_check_recipes.py), --jobs at once on the data written once: every family on
     1 process and on 2 processes sharing GPU 0, fec_large under the deepspeed launcher, each resumed by a
     second launch; with engine.final_eval=false (no final evaluation, tables or figures) and, where the
     engine has it, engine.count_syncs=true for the host-syncs-per-step rows.
`--dry-run` runs the same machinery on the CPU with tiny sizes, one recipe check and two probes of the
harness (a failing launch, a launch past its limit). Exit status: 0 when every row is as expected, 1 if not,
2 without a CUDA device (and no --dry-run).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from gpu_check_recipes import ROOT, run_check, specs
from gpu_check_rows import PROCS, Report, Row, launch, stream_rows
from gpu_check_timed import plan


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/gpu_check/rows.jsonl")
    p.add_argument("--budget", type=float, default=230.0, help="seconds until every row is reported")
    p.add_argument("--timed-budget", type=float, default=100.0, help="seconds for the timed rows")
    p.add_argument("--row-limit", type=float, default=45.0, help="seconds for one timed row")
    p.add_argument("--jobs", type=int, default=5, help="recipe checks at once (9 checks: two rounds)")
    p.add_argument("--dry-run", action="store_true", help="the harness on the CPU, tiny sizes")
    p.add_argument("--select", default="", help="only the rows whose name matches this regular expression")
    p.add_argument("--keep", action="store_true", help="keep the work folder (run directories, launch logs)")
    return p.parse_args(argv)


def timed_rows(names: dict, device: str, size: str, env: dict, args, report: Report, end: float, work: str) -> None:
    left = list(names)
    while left and time.monotonic() < end:   # a row killed at its limit: a new worker for the rest
        cmd = [sys.executable, os.path.join(ROOT, "tools", "gpu_check_timed.py"), device, size, *left]
        left = stream_rows(cmd, env, ROOT, left, names, args.row_limit, end, report, os.path.join(work, "timed"))
    for key in left:
        report.add(Row(*names[key], status="skipped", error="budget spent before it started"))


def prepare_data(work: str, env: dict, report: Report, end: float) -> None:
    try:
        res = launch([sys.executable, os.path.join(ROOT, "tools", "gpu_check_recipes.py"), work],
                     dict(env, CUDA_VISIBLE_DEVICES=""), ROOT, end, os.path.join(work, "prepare"))
    except RuntimeError:      # stopped before it started: main lists it as not run
        return
    finally:
        open(os.path.join(work, "prepared"), "w").close()     # the timed rows wait for this
    ok = res.rc == 0
    report.add(Row("data", "tiny data, written once for every check", res.stdout.strip() if ok else "",
                   status="ok" if ok else ("skipped" if res.rc is None else "FAIL"), seconds=round(res.seconds, 1),
                   error="" if ok else res.error))


def main(argv=None) -> int:
    args = parse(argv)
    t0 = time.monotonic()
    import torch
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("gpu_check: no CUDA device visible (torch.cuda.is_available() is False); run it on a GPU machine, "
              "or with --dry-run", file=sys.stderr)
        return 2
    from dataclasses import fields

    import dist_cluster.checkpoint  # noqa: F401  (imported once here, not by the pool's threads at once)
    import dist_cluster.distributed.spawn  # noqa: F401
    import dist_cluster.logging  # noqa: F401
    from dist_cluster.config.schema import EngineConfig
    count_syncs = "count_syncs" in {f.name for f in fields(EngineConfig)}
    device, size = ("cpu", "tiny") if args.dry_run else ("cuda", "full")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    timed_env = dict(env)                     # the timed rows have the machine to themselves
    env.setdefault("OMP_NUM_THREADS", "1" if args.dry_run else "2")   # launches run several at once
    if args.dry_run:
        env["DS_ACCELERATOR"] = "cpu"
    report, end = Report(args.out, t0), t0 + args.budget
    gpu = f"{torch.cuda.get_device_name(0)} × {torch.cuda.device_count()}" if cuda else "no GPU"
    report.add(Row("info", "machine", f"{gpu}, torch {torch.__version__}, {os.cpu_count()} cores; "
                   f"{'dry run on the CPU' if args.dry_run else 'GPU run'}, budget {args.budget:.0f} s"))
    work = tempfile.mkdtemp(prefix="gpu_check_")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    chosen = re.compile(args.select or ".").search
    names = {k: v for k, v in plan(size).items() if chosen(v[1])}
    checks = [s for s in specs(work, args.dry_run) if chosen(s.name)]
    try:
        prep = threading.Thread(target=prepare_data, args=(work, env, report, end))
        if checks:
            prep.start()      # CPU only: it may overlap the timed rows
        quiet = dict(timed_env, GPU_CHECK_AFTER=os.path.join(work, "prepared")) if checks else timed_env
        timed_rows(names, device, size, quiet, args, report, min(end, t0 + args.timed_budget), work)
        if checks:
            prep.join()
        env2 = dict(env, DIST_CLUSTER_BACKEND="cpu:gloo,cuda:gloo") if cuda and not args.dry_run else env
        with ThreadPoolExecutor(args.jobs) as pool:
            for spec in checks:
                pool.submit(_guarded, spec, work, env2 if spec.launcher == "torchrun" else env, end, report,
                            count_syncs)
    except KeyboardInterrupt:
        print("gpu_check: interrupted; the rows so far are in", args.out, file=sys.stderr)
    finally:
        PROCS.close()
        done = [r.check for r in report.rows]
        data = [("data", "tiny data, written once for every check")] if checks else []
        for section, check in [*names.values(), *data, *(("recipe", c.name) for c in checks)]:
            if not any(d.startswith(check) for d in done):   # interrupted before it ran
                report.add(Row(section, check, status="skipped", error="not run: the check was stopped"))
        print("\n" + report.table(), flush=True)
        print(f"\n{len(report.rows)} rows in {time.monotonic() - t0:.0f} s: {args.out} and "
              f"{os.path.splitext(args.out)[0]}.md" + (f"; work folder {work}" if args.keep else ""))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.status in (r.expected, "n/a") for r in report.rows) else 1


def _guarded(spec, work, env, end, report, count_syncs) -> None:
    try:
        run_check(spec, work, env, end, report, count_syncs)
    except Exception as e:   # stopped, or a fault of the harness itself: still a row
        report.add(Row("recipe", spec.name, status="skipped" if PROCS.closed else "FAIL", expected=spec.expect,
                       error=f"{type(e).__name__}: {e}"))


def _stop(*_) -> None:
    PROCS.close()         # before unwinding: the pool's threads then end at once
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
