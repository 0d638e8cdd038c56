"""One view of rank / world size / local rank / master address for every launcher we support."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "single"       # single | torchrun | deepspeed | slurm

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def export(self, environ: dict | None = None) -> None:
        """Write the torch.distributed variables so every library sees the same view."""
        env = os.environ if environ is None else environ
        env.update(RANK=str(self.rank), WORLD_SIZE=str(self.world_size), LOCAL_RANK=str(self.local_rank),
                   LOCAL_WORLD_SIZE=str(self.local_world_size), MASTER_ADDR=self.master_addr,
                   MASTER_PORT=str(self.master_port))


def first_slurm_host(nodelist: str) -> str:
    """First host of a Slurm nodelist such as 'gpu[003-005,9],cpu1' without needing scontrol."""
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=10, check=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    m = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist)
    if not m:
        return nodelist
    prefix, _, ranges = m.groups()
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def _slurm_port(job_id: str) -> int:
    # Same job → same port on every task; spread jobs sharing a node over a range.
    return 20000 + int(job_id) % 20000 if job_id.isdigit() else 29500


def resolve(environ: Mapping[str, str] | None = None) -> DistEnv:
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        # torchrun and the deepspeed launcher both export these (the latter also sets CROSS_RANK et al.)
        launcher = "torchrun" if "TORCHELASTIC_RUN_ID" in env else "deepspeed" if (
            "CROSS_RANK" in env or "DS_ACCELERATOR" in env and "LOCAL_SIZE" in env) else "torchrun"
        world = int(env["WORLD_SIZE"])
        return DistEnv(rank=int(env["RANK"]), world_size=world, local_rank=int(env.get("LOCAL_RANK", 0)),
                       local_world_size=int(env.get("LOCAL_WORLD_SIZE", env.get("LOCAL_SIZE", world))),
                       master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
                       master_port=int(env.get("MASTER_PORT", 29500)), launcher=launcher)
    # Inside an srun step (submitit runs its tasks that way); a bare sbatch script is one process.
    if "SLURM_PROCID" in env and ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env):
        world = int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")))
        nodes = int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1")))
        local_world = int(env.get("SLURM_NTASKS_PER_NODE", "0").split("(")[0] or 0) or max(world // nodes, 1)
        master = env.get("MASTER_ADDR") or first_slurm_host(env.get("SLURM_JOB_NODELIST",
                                                                    env.get("SLURM_NODELIST", "127.0.0.1")))
        port = int(env.get("MASTER_PORT", _slurm_port(env.get("SLURM_JOB_ID", ""))))
        return DistEnv(rank=int(env["SLURM_PROCID"]), world_size=world, local_rank=int(env.get("SLURM_LOCALID", 0)),
                       local_world_size=local_world, master_addr=master, master_port=port, launcher="slurm")
    return DistEnv(master_port=int(env.get("MASTER_PORT", 29500)))
