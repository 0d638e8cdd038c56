"""The benchmark cases, the options they share, and the row every case returns."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass
class Options:
    quick: bool = False            # small inputs; exactness, not speed
    procs: tuple[int, ...] = (1, 2)
    repeats: int = 3
    threads: int = 2               # torch threads in all (split over the processes)
    out: str = "runs/bench"
    remote: bool = False           # data: read shards through a throttled pipe
    rate: str = "50m"              # data --remote: bytes per second of the pipe
    extra: dict = field(default_factory=dict)
    device: str = "cpu"            # "cuda": the GPU cases (knn, kmeans) on one GPU

    @property
    def pause(self) -> float:
        """Seconds between timed calls (timer.paired): none when only exactness counts."""
        return 0.0 if self.quick else 0.5


@dataclass
class Row:
    case: str
    what: str                      # the measurement and its input
    procs: str                     # processes × threads of ours
    ours: float                    # seconds (or the unit in `unit`)
    peer_name: str = ""
    peer: float | None = None
    target: str = ""               # e.g. "≤1.0" on ours / peer
    exact: bool | None = None      # did the results agree (None: nothing to compare)
    note: str = ""
    unit: str = "s"
    share: float | None = None     # GPU rows: ours' GEMM flop rate ÷ the measured matmul rate

    @property
    def ratio(self) -> float | None:
        return self.ours / self.peer if self.peer else None

    @property
    def met(self) -> bool | None:
        if not self.target or self.ratio is None:
            return None
        op, bound = self.target[0], float(self.target[1:])
        return self.ratio <= bound if op == "≤" else self.ratio >= bound


# name -> module in this package that defines run(opts) -> list[Row]
CASES = {"kmeans": "kmeans", "knn": "knn", "data": "data", "coding_rate": "coding_rate", "engine": "engine",
         "fec": "fec", "cgmcr2": "cgmcr2", "unic": "unic", "pici": "pici", "cluster_cli": "cluster_cli"}


def load(name: str):
    return importlib.import_module(f"dist_cluster.bench.{CASES[name]}")


GPU_CASES = {"knn": "gpu_knn", "kmeans": "gpu_kmeans"}      # --device cuda: on one GPU


def load_for(name: str, device: str):
    return importlib.import_module(f"dist_cluster.bench.{(GPU_CASES if device == 'cuda' else CASES)[name]}")
