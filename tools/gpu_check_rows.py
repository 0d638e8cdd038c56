"""The row machinery of tools/gpu_check.py: rows written as they finish, launches killed at their deadline,
the error line of a failed launch. Imports no torch: the harness starts at once."""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass

ERROR = re.compile(r"Error|error:|Exception")
RAISED = re.compile(r"^(error:|[\w.]*(Error|Exception|Exit)\b)")          # "ValueError: ...", "error: ..."
BANNER = re.compile(r"ChildFailedError|elastic/|error_file|To enable traceback|exits with return code|^\s*raise ")
RANK_PREFIX = re.compile(r"^\[(rank|default)\d*\]:\s?")
SECTIONS = ("info", "kernel", "fps", "train", "data", "recipe", "syncs")


@dataclass
class Row:
    section: str
    check: str
    result: str = ""
    reference: str = ""
    status: str = "ok"          # ok | FAIL | skipped (deadline or budget) | n/a
    seconds: float = 0.0        # the row's own wall time
    error: str = ""
    expected: str = "ok"        # the status a good run gives (the dry run's probes expect FAIL or skipped)
    t: float = 0.0              # seconds since the check started, when the row was written


def error_line(text: str, rc: int | None = None) -> str:
    """The last line of a failed launch's stderr that says what went wrong (an exception or `error:` line),
    not the launcher's banner or a `raise` source line; else the last non-empty line."""
    lines = [RANK_PREFIX.sub("", line).strip() for line in text.splitlines()]
    hits = [line for line in lines if ERROR.search(line) and not BANNER.search(line)]
    raised = [line for line in hits if RAISED.match(line)]
    pick = (raised or hits or [line for line in lines if line and not set(line) <= set("=-")] or [""])[-1]
    return (pick or f"exit code {rc}")[:240]


class Report:
    """Rows appended to OUT (JSON lines) and OUT with .md (markdown rows) the moment each one is added."""

    def __init__(self, out: str, t0: float, echo: bool = True):
        self.out, self.md, self.t0, self.echo = out, os.path.splitext(out)[0] + ".md", t0, echo
        self.rows: list[Row] = []
        self.lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        open(self.out, "w").close()
        with open(self.md, "w") as f:
            f.write("| check | result | reference | status |\n|---|---|---|---|\n")

    def add(self, row: Row) -> Row:
        with self.lock:
            row.t = round(time.monotonic() - self.t0, 1)
            self.rows.append(row)
            with open(self.out, "a") as f:
                f.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            with open(self.md, "a") as f:
                f.write(f"| {row.check} | {_cell(row)} | {row.reference} | {row.status} |\n")
            if self.echo:
                print(f"[{row.t:5.0f}s] {row.status:<7} {row.check}: {_cell(row)}", flush=True)
        return row

    def table(self) -> str:
        """All rows, grouped by section (the files keep the order they finished in)."""
        rows = sorted(self.rows, key=lambda r: SECTIONS.index(r.section) if r.section in SECTIONS else 99)
        w = max([len(r.check) for r in rows] + [5])
        lines = [f"| {'check':<{w}} | result | reference | status |", f"|{'-' * (w + 2)}|---|---|---|"]
        lines += [f"| {r.check:<{w}} | {_cell(r)} | {r.reference} | {r.status} |" for r in rows]
        return "\n".join(lines)


def _cell(row: Row) -> str:
    return " — ".join(x for x in (row.result, row.error) if x).replace("|", "/")


class Procs:
    """Every live child process group, so a deadline, the budget's end or a signal can kill whole trees."""

    def __init__(self):
        self.live: set[subprocess.Popen] = set()
        self.lock = threading.RLock()   # re-entrant: a signal handler may close() while this thread starts one
        self.closed = False

    def start(self, cmd: list[str], env: dict, cwd: str, stdout, stderr) -> subprocess.Popen:
        with self.lock:
            if self.closed:
                raise RuntimeError("stopped: the check is ending")
            p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=stdout, stderr=stderr, text=True,
                                 start_new_session=True)   # its own group: launcher and workers die together
            self.live.add(p)
        return p

    def kill(self, p: subprocess.Popen) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                p.wait(timeout=3)
                break
            except subprocess.TimeoutExpired:
                continue
        with self.lock:
            self.live.discard(p)

    def done(self, p: subprocess.Popen) -> None:
        with self.lock:
            self.live.discard(p)

    def close(self) -> None:
        """Start nothing more; kill what runs."""
        with self.lock:
            self.closed = True
        for p in list(self.live):
            self.kill(p)


PROCS = Procs()


@dataclass
class Launch:
    rc: int | None          # None: killed at its deadline
    stdout: str
    stderr: str
    seconds: float

    @property
    def error(self) -> str:
        return "killed at its deadline" if self.rc is None else error_line(self.stderr, self.rc)


def launch(cmd: list[str], env: dict, cwd: str, deadline: float, log: str) -> Launch:
    """Run cmd until it exits or the monotonic `deadline` passes (then its process group is killed).
    Output goes to files (no pipe to fill): log.out and log.err."""
    t = time.monotonic()
    with open(log + ".out", "w") as out, open(log + ".err", "w") as err:
        p = PROCS.start(cmd, env, cwd, out, err)
        try:
            rc = p.wait(timeout=max(0.0, deadline - time.monotonic()))
            PROCS.done(p)
            rc = None if PROCS.closed and rc < 0 else rc     # killed by close(): as at a deadline
        except subprocess.TimeoutExpired:
            PROCS.kill(p)
            rc = None
    return Launch(rc, open(log + ".out").read(), open(log + ".err").read(), time.monotonic() - t)


def stream_rows(cmd: list[str], env: dict, cwd: str, keys: list[str], names: dict[str, tuple[str, str]],
                row_limit: float, deadline: float, report: Report, log: str) -> list[str]:
    """Run a worker that prints `GPU_CHECK START key` / `GPU_CHECK ROW {json}` lines; add each row as it comes.

    A row running past `row_limit` seconds (its first one: plus the worker's start) or the `deadline` gets the
    worker killed and is marked skipped. Returns the keys not reported (the caller may start a new worker)."""
    events: queue.Queue = queue.Queue()
    err = open(log + ".err", "a")
    p = PROCS.start(cmd, env, cwd, subprocess.PIPE, err)

    def read():
        for line in p.stdout:
            if line.startswith("GPU_CHECK "):
                events.put(line.split(" ", 2)[1:])
        events.put(None)
    threading.Thread(target=read, daemon=True).start()
    left, current, row_end = list(keys), None, min(deadline, time.monotonic() + 2 * row_limit)
    row_start = time.monotonic()
    while left:
        try:
            ev = events.get(timeout=max(0.0, row_end - time.monotonic()))
        except queue.Empty:
            PROCS.kill(p)
            key = current or left[0]
            why = "budget spent" if row_end >= deadline else f"over its {row_limit:.0f} s limit"
            report.add(Row(*names[key], status="skipped", seconds=round(time.monotonic() - row_start, 1),
                           error=f"killed: {why}"))
            left.remove(key)
            break
        if ev is None:        # the worker died (a crash, not an exception: those come back as rows)
            p.wait()
            key = current or left[0]
            report.add(Row(*names[key], status="FAIL", error=error_line(open(log + ".err").read(), p.returncode)))
            left.remove(key)
            break
        kind, body = ev[0], ev[1].strip()
        if kind == "START":
            current, row_start = body, time.monotonic()
            row_end = min(deadline, row_start + row_limit)
        elif kind == "ROW":
            rec = json.loads(body)
            report.add(Row(**{k: v for k, v in rec.items() if k != "key"}))
            left.remove(rec["key"])
            current = None
    if p.poll() is None and not left:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    if p.poll() is None:
        PROCS.kill(p)
    PROCS.done(p)
    err.close()
    return left
