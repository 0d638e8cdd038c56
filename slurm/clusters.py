"""Site settings for `slurm/submit.py`: edit this file once for your cluster.

Pick a site with `site=NAME` on the command line or the DIST_CLUSTER_SITE environment variable; any field
can still be overridden per submission (`partition=... time=...`). `localtest` is the one-node Slurm that
tools/slurm_local/start.sh brings up for the test suite.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field


@dataclass
class Site:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = 1
    gpus_per_node: int = 8          # one task per GPU; 0 = CPU-only nodes, then tasks_per_node counts
    tasks_per_node: int = 1         # used only when gpus_per_node == 0
    cpus_per_task: int = 10
    mem_gb: float | None = None     # per node; None = the partition's default
    time: str = "24:00:00"          # minutes, HH:MM:SS or D-HH:MM:SS
    signal_delay_s: int = 120       # USR2 this long before the time limit: checkpoint() requeues the job
    max_requeue: int = 20           # requeues after a time limit (preemptions are not counted)
    gres: bool = False              # request GPUs as --gres=gpu:N instead of --gpus-per-node=N
    setup: list[str] = field(default_factory=list)      # shell lines run before srun (modules, conda, ...)
    srun_args: list[str] = field(default_factory=list)  # e.g. ["--cpu-bind=none"]
    sbatch: dict = field(default_factory=dict)          # any other #SBATCH option, e.g. {"exclusive": True}
    logs: str = "{run_dir}/slurm"   # submitit folder (a %j sub-folder per job); {run_dir} = the run directory


SITES: dict[str, Site] = {
    # A typical multi-node A100 cluster; fill in partition/account/qos once.
    "default": Site(),
    # CPU-only nodes: one task per core group, no GPUs requested.
    "cpu": Site(gpus_per_node=0, tasks_per_node=4, cpus_per_task=4, time="12:00:00"),
    # The local one-node test cluster (2 cores): small, quick requeues.
    "localtest": Site(gpus_per_node=0, tasks_per_node=2, cpus_per_task=1, mem_gb=4, time="00:30:00",
                      signal_delay_s=30, max_requeue=3),
}


def site(name: str | None = None) -> Site:
    """The named site (default: $DIST_CLUSTER_SITE or 'default'), as a fresh copy."""
    name = name or os.environ.get("DIST_CLUSTER_SITE", "default")
    if name not in SITES:
        raise KeyError(f"unknown site '{name}' (sites in slurm/clusters.py: {', '.join(sorted(SITES))})")
    return dataclasses.replace(SITES[name], setup=list(SITES[name].setup), srun_args=list(SITES[name].srun_args),
                               sbatch=dict(SITES[name].sbatch))
