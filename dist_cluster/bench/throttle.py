"""A slow link: copy a file to stdout at a fixed rate (`python -m dist_cluster.bench.throttle 50m FILE`), or
read one file at that rate plus a per-request latency (an object store's GET, for the ImageFolder peer)."""
from __future__ import annotations

import os
import sys
import time

BLOCK = 1 << 16


def parse_rate(rate: str) -> float:
    """'50m' → 50·2²⁰ bytes/s ('k', 'm', 'g' suffixes, as pv -L)."""
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(rate[-1].lower(), 1)
    return float(rate[:-1] if rate[-1].isalpha() else rate) * mult


def read_throttled(path: str, rate: float, latency: float = 0.0) -> bytes:
    time.sleep(latency)
    t0, out = time.perf_counter(), bytearray()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            out += block
            ahead = len(out) / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
    return bytes(out)


def main(argv=None) -> None:
    rate_s, path = (argv or sys.argv[1:])[:2]
    rate, sent, t0 = parse_rate(rate_s), 0, time.perf_counter()
    try:
        with open(path, "rb") as f:
            while block := f.read(BLOCK):
                sys.stdout.buffer.write(block)
                sent += len(block)
                ahead = sent / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        sys.stdout.buffer.flush()
    except BrokenPipeError:      # the reader stopped early (its epoch was full): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
