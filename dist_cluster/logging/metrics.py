"""Rank-0 metric sink: a console line, metrics.jsonl (one line per logged step or evaluation) and TensorBoard.

A record made only of `final/...` keys (a method's result table as scalars) is not echoed: the table itself
was printed just before; it still goes to metrics.jsonl and TensorBoard."""
from __future__ import annotations

import json
import math
import os
import time


def read_records(run_dir: str, kind: str | None = None) -> list[dict]:
    """The records of a run's metrics.jsonl (of one `kind`: train, eval, data, ...); [] when there is none."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return [r for r in recs if kind is None or r.get("kind") == kind]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class MetricLogger:
    def __init__(self, run_dir: str, enabled: bool, tensorboard: bool = True):
        self.enabled = enabled
        self.t0 = time.time()
        self._jsonl = self._tb = None
        if enabled:
            os.makedirs(run_dir, exist_ok=True)
            self._jsonl = open(os.path.join(run_dir, "metrics.jsonl"), "a", buffering=1)
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(os.path.join(run_dir, "tb"))

    def log(self, record: dict, step: int, kind: str = "train", echo: bool = True) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (int, str)) else v)
                 for k, v in record.items()}
        line = {"kind": kind, "step": step, "time": round(time.time() - self.t0, 3)} | clean
        self._jsonl.write(json.dumps(line) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(f"{kind}/{k}", v, step)
        if echo and not all(k.startswith("final/") for k in clean):   # final/*: the table printed just before
            print(f"[{kind} step {step}] " + " ".join(f"{k}={_fmt(v)}" for k, v in clean.items()), flush=True)

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
        if self._tb:
            self._tb.close()
