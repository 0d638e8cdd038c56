"""One table for all cases (ratio = ours ÷ peer, with the target) and a JSON line per row in runs/bench/."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import time

from dist_cluster.bench.registry import Row


def _num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    return f"{v:.4g}{' ' + unit if unit else ''}"


def table(rows: list[Row]) -> str:
    head = ("case", "measurement", "procs×threads", "ours", "peer", "peer value", "ratio", "target", "met", "exact",
            "of matmul rate", "note")
    cells = [head] + [(r.case, r.what, r.procs, _num(r.ours, r.unit), r.peer_name or "-", _num(r.peer, r.unit),
                       "-" if r.ratio is None else f"{r.ratio:.2f}", r.target or "-",
                       {None: "-", True: "yes", False: "NO"}[r.met], {None: "-", True: "yes", False: "NO"}[r.exact],
                       "-" if r.share is None else f"{r.share:.0%}", r.note) for r in rows]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(head))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def append_jsonl(rows: list[Row], out_dir: str, quick: bool) -> None:
    os.makedirs(out_dir, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    host = {"host": platform.node(), "cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    for r in rows:
        rec = {**dataclasses.asdict(r), "ratio": r.ratio, "met": r.met, "quick": quick, "time": stamp, **host}
        with open(os.path.join(out_dir, f"{r.case}.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")


def cpu_summary() -> str:
    """The CPU's model and the flags that decide the kNN and k-means paths (bfloat16 GEMMs need AMX)."""
    import torch
    model, flags = platform.processor() or "CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    have = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return (f"{model} (torch kernels {torch.backends.cpu.get_cpu_capability()}; flags: "
            f"{' '.join(have) or 'none of avx2, avx512f, avx512_bf16, amx_bf16'})")

