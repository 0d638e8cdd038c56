"""The submitit job: trains one experiment on every task and requeues itself on preemption or time limit.

Slurm sends USR2 `signal_delay_s` before the time limit (and on preemption); submitit then calls
`checkpoint()` on rank 0, which hands back a fresh job for the same config, and requeues it. The requeued
job resumes from the newest complete checkpoint in the same run directory (the engine does that), so work
since that checkpoint is redone; `ckpt.every_steps` bounds how much. Every start, requeue signal and end is
appended to `<run_dir>/jobs.jsonl`, which is where the requeue count and timings are read back from.

SIGTERM and SIGUSR1 stop training after the current optimizer step with a checkpoint on every task
(dist_cluster/engine/preemption.py); the stop is recorded. After SIGTERM every task exits 143 and Slurm decides
what comes next: a preempted job is requeued (the job is submitted with --requeue), a cancelled one stays
cancelled. After SIGUSR1 rank 0 requeues the job the way submitit's own handler does (`checkpoint()`, then
`scontrol requeue`, or the local executor's requeue exit code), so `scancel --signal=USR1 JOB` means "save now
and come back".
"""
from __future__ import annotations

import json
import os
import signal
import socket
import time

import cloudpickle
import submitit

# Variables a launcher may have left in the submitting shell; inside a job they would mislead the resolver.
_FOREIGN_RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                      "TORCHELASTIC_RUN_ID", "CROSS_RANK")


def history_path(run_dir: str) -> str:
    return os.path.join(run_dir, "jobs.jsonl")


def read_history(run_dir: str) -> list[dict]:
    path = history_path(run_dir)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _append(run_dir: str, record: dict) -> None:
    os.makedirs(run_dir, exist_ok=True)
    with open(history_path(run_dir), "a") as f:
        f.write(json.dumps(record) + "\n")


def _after_stop(env: submitit.JobEnvironment, run_dir: str, stop, restarts: int | None = None):
    """A run stopped by SIGTERM/SIGUSR1 (a StopRun, raised on every task once the checkpoint is complete): record
    it; for SIGUSR1 requeue the job. Returns the exception this task exits with."""
    if env.global_rank == 0:
        _append(run_dir, {"event": "stop", "signal": stop.signal_name, "job_id": env.job_id, "restart": restarts,
                          "time": time.time(), "global_step": stop.step, "checkpoint": stop.path})
    if stop.signum != signal.SIGUSR1:
        return stop
    if env.global_rank == 0:   # checkpoint() + requeue + exit: submitit's own preemption path
        from submitit.core.job_environment import SignalHandler
        delayed = submitit.helpers.DelayedSubmission.load(env.paths.submitted_pickle)
        SignalHandler(env, env.paths, delayed).checkpoint_and_try_requeue(stop.signum)
    # The other ranks exit 0: a failed task could make srun (KillOnBadExit=1) kill rank 0 before it requeues.
    # No result is written (SystemExit), so the requeued job's results are the job's results.
    return SystemExit(0)


def _port(job_id: str, restarts: int) -> int:
    # Same on every task of one start; a new port per restart, so a requeued job never meets a rendezvous
    # store left over from its previous start (the stale-store hang of submitit issue #1613).
    digits = "".join(c for c in job_id if c.isdigit()) or "0"
    return 20000 + (int(digits) + 7919 * restarts) % 20000


def prepare_rank_env(env: submitit.JobEnvironment, restarts: int) -> None:
    """Export what dist_cluster.distributed.resolve() needs for this executor."""
    for k in _FOREIGN_RANK_VARS:
        os.environ.pop(k, None)
    os.environ["MASTER_PORT"] = str(_port(env.job_id, restarts))
    if env.cluster == "local":   # submitit's local executor sets only SUBMITIT_LOCAL_* variables
        os.environ.update(RANK=str(env.global_rank), WORLD_SIZE=str(env.num_tasks),
                          LOCAL_RANK=str(env.local_rank), LOCAL_WORLD_SIZE=str(env.num_tasks),
                          MASTER_ADDR="127.0.0.1")
    elif env.cluster == "debug":   # in-process, one task
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")


class TrainJob(submitit.helpers.Checkpointable):
    """Callable submitted once per run. The config travels pickled and is rebuilt only after the recipe file
    has been executed in the job, so whatever the recipe puts on the path (its method module) is importable
    there, as when the recipe runs as a script. `info` (recipe, overrides, sweep tag) is only recorded."""

    def __init__(self, cfg, recipe_path: str | None = None, info: dict | None = None):
        self._cfg = cfg
        self._cfg_bytes = cloudpickle.dumps(cfg)
        self.run_dir = os.path.abspath(cfg.resolved_run_dir())   # known before the recipe is loaded
        self.recipe_path = recipe_path
        self.info = dict(info or {})

    def __getstate__(self):
        return dict(self.__dict__, _cfg=None)

    @property
    def cfg(self):
        if self._cfg is None:
            if self.recipe_path:
                from dist_cluster.launch import load_recipe
                load_recipe(self.recipe_path)
            self._cfg = cloudpickle.loads(self._cfg_bytes)
        return self._cfg

    def _restarts(self, env: submitit.JobEnvironment) -> int:
        """Slurm counts requeues for us; the local executor does not, so count earlier starts in the history."""
        if "SLURM_RESTART_COUNT" in os.environ:
            return int(os.environ["SLURM_RESTART_COUNT"])
        return sum(1 for r in read_history(self.run_dir) if r.get("event") == "start" and r.get("job_id") == env.job_id)

    def __call__(self) -> dict:
        env = submitit.JobEnvironment()
        restarts = self._restarts(env)
        # Only Slurm's count is the same on every task at once; the history count would race with rank 0's write.
        prepare_rank_env(env, int(os.environ.get("SLURM_RESTART_COUNT", 0)))
        print(f"[job {env.job_id}] task {env.global_rank}/{env.num_tasks} on {socket.gethostname()}, "
              f"requeue count {restarts}, run dir {self.run_dir}", flush=True)
        if env.global_rank == 0:
            _append(self.run_dir, {"event": "start", "job_id": env.job_id, "restart": restarts,
                                   "time": time.time(), "cluster": env.cluster, "hosts": list(env.hostnames),
                                   "tasks": env.num_tasks} | self.info)
        cfg = self.cfg
        from dist_cluster.engine.preemption import StopRun
        from dist_cluster.launch import run
        try:
            summary = run(cfg)
        except StopRun as stop:
            raise _after_stop(env, self.run_dir, stop, restarts) from None
        summary = dict(summary, job_id=env.job_id, requeue_count=restarts)
        if env.global_rank == 0:
            _append(self.run_dir, {"event": "end", "job_id": env.job_id, "restart": restarts, "time": time.time(),
                                   "global_step": summary.get("global_step"),
                                   "resumed_from": summary.get("resumed_from")})
        return summary

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Called on rank 0 by submitit's USR2 handler: a fresh job for the same config, to be requeued."""
        try:
            job_id = submitit.JobEnvironment().job_id
        except Exception:   # called outside a job (tests of the object itself)
            job_id = None
        _append(self.run_dir, {"event": "requeue", "job_id": job_id, "time": time.time()})
        print(f"[job {job_id}] preempted or near its time limit: requeueing; the next start resumes from the "
              f"newest complete checkpoint in {self.run_dir}/checkpoints", flush=True)
        return submitit.helpers.DelayedSubmission(TrainJob(self.cfg, self.recipe_path, self.info))


class ClusterJob(submitit.helpers.Checkpointable):
    """`python -m dist_cluster.cluster ARGS` on every task of a job (slurm/submit.py cli="ARGS"); the data were
    sharded and every argument checked before submission, and a requeued job trains its seeds again."""

    def __init__(self, argv: list[str], run_dir: str):
        self.argv, self.run_dir = list(argv), run_dir

    def __call__(self) -> dict | None:
        env = submitit.JobEnvironment()
        prepare_rank_env(env, int(os.environ.get("SLURM_RESTART_COUNT", 0)))
        if env.global_rank == 0:
            _append(self.run_dir, {"event": "start", "job_id": env.job_id, "time": time.time(),
                                   "cluster": env.cluster, "tasks": env.num_tasks, "cli": self.argv})
        from dist_cluster.cluster.__main__ import main
        from dist_cluster.engine.preemption import StopRun
        try:
            summary = main(self.argv)
        except StopRun as stop:
            raise _after_stop(env, self.run_dir, stop) from None
        if env.global_rank == 0:
            _append(self.run_dir, {"event": "end", "job_id": env.job_id, "time": time.time()})
        return summary
