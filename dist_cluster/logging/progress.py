"""Progress of the slow steps: a tqdm bar on a terminal, a few plain lines in a log file.

`Progress` is a bar on a terminal and otherwise one line per ~10% (a redirected tqdm bar would write a
carriage-return line per update). `timed` brackets a step with no natural count (UNIC's neighbour mining).
`TrainingPlan` prints the training's total steps before the first step and an ETA after the first epoch of
each stage (stages differ in cost: PICI's pre-training skips the heads).
"""
from __future__ import annotations

import contextlib
import sys
import time


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _tty() -> bool:
    return sys.stderr.isatty()


class Progress:
    """update(n) / close(); silent when not enabled (other ranks)."""

    def __init__(self, total: int, desc: str, unit: str = "it", enabled: bool = True, tty: bool | None = None,
                 every: float = 0.1):
        self.total, self.desc, self.unit = max(0, int(total)), desc, unit
        self.enabled = enabled and self.total > 0      # nothing to do (all cached): nothing to say
        self.done, self.every, self.t0, self.bar = 0, every, time.time(), None
        self.next_mark = every
        if self.enabled and (_tty() if tty is None else tty):
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, unit=unit, desc=desc, dynamic_ncols=True)
        elif self.enabled:
            print(f"{desc}: {self.total:,} {unit} ...", flush=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if not self.enabled or not self.total:
            return
        frac = self.done / self.total
        if frac >= self.next_mark and self.done < self.total:
            dt = time.time() - self.t0
            print(f"{self.desc}: {self.done:,}/{self.total:,} {self.unit} ({frac:.0%}), {duration(dt)}, "
                  f"about {duration(dt / frac - dt)} left", flush=True)
            while self.next_mark <= frac:
                self.next_mark += self.every

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.total:
            print(f"{self.desc}: {self.done:,} {self.unit} in {duration(time.time() - self.t0)}", flush=True)
        self.enabled = False


@contextlib.contextmanager
def timed(desc: str, enabled: bool = True):
    """'desc ...' before, 'desc: done in T' after (printed on rank 0 only: pass enabled=is_main)."""
    t0 = time.time()
    if enabled:
        print(f"{desc} ...", flush=True)
    yield
    if enabled:
        print(f"{desc}: done in {duration(time.time() - t0)}", flush=True)


class TrainingPlan:
    """The line before training (total steps per stage) and one ETA line after each stage's first epoch."""

    def __init__(self, stages, steps_per_epoch: int, done: int, global_batch: int, enabled: bool = True,
                 max_steps: int = 0):
        self.total = sum(s.epochs for s in stages) * steps_per_epoch
        self.total = min(self.total, max_steps) if max_steps else self.total
        self.enabled, self.mark, self.seen = enabled, None, set()
        if enabled:
            plan = ", ".join(f"{s.name} {s.epochs} epochs" for s in stages)
            print(f"training: {self.total:,} optimizer steps ({plan}; {steps_per_epoch:,} steps of {global_batch:,} "
                  f"samples per epoch)" + (f", stopping at engine.max_steps={max_steps:,}" if max_steps else "")
                  + (f", {done:,} already done" if done else ""), flush=True)

    def epoch_start(self, stage: str, step: int) -> None:
        """Called at every epoch's start: after the first epoch of a stage, the time left at its pace."""
        if not self.enabled:
            return
        now = time.time()
        if self.mark is not None:
            t, s, name = self.mark
            if name not in self.seen and step > s:
                self.seen.add(name)
                per_step, left = (now - t) / (step - s), self.total - step
                print(f"first {name} epoch: {duration(now - t)} for {step - s:,} steps; about "
                      f"{duration(per_step * left)} left for the remaining {left:,} steps at this pace", flush=True)
        self.mark = (now, step, stage)
