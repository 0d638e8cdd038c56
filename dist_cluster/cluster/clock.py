"""Every step of an end-of-run report printed with its time, and the estimate first when it exceeds a minute."""
from __future__ import annotations

import time
from contextlib import contextmanager

SAY_ESTIMATE_ABOVE_S = 60.0


class ReportClock:
    def __init__(self, prefix: str = "report", quiet: bool = False):
        self.prefix, self.quiet = prefix, quiet
        self.steps: list[dict] = []
        self.estimate_s: float | None = None
        self.t0 = time.perf_counter()

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.prefix}] {text}", flush=True)

    @contextmanager
    def step(self, what: str):
        t = time.perf_counter()
        yield
        dt = time.perf_counter() - t
        self.steps.append({"step": what, "seconds": round(dt, 3)})
        self.say(f"{what}: {dt:.1f} s")

    def estimate(self, seconds: float, detail: str, hint: str = "") -> None:
        """Say the expected cost before the report starts, when it is over a minute."""
        self.estimate_s = seconds
        if seconds > SAY_ESTIMATE_ABOVE_S:
            self.say(f"estimated {seconds / 60:.1f} min before the table ({detail}){'; ' + hint if hint else ''}")

    def record(self, say_total: bool = True) -> dict:
        total = time.perf_counter() - self.t0
        if say_total:
            self.say(f"total: {total:.1f} s")
        return {"steps": self.steps, "total_s": round(total, 3), "estimate_s": self.estimate_s}
