"""Submit a recipe to Slurm (or run it locally) through submitit.

    python slurm/submit.py recipe=NAME [nodes=2 gpus_per_node=8 partition=... account=... qos=... time=...
        constraint=... cpus_per_task=... mem_gb=... tasks_per_node=... cluster=slurm|local|debug site=...
        sbatch.<opt>=... srun_args="..." job_name=...] [--dry-run] [--wait|--no-wait] [recipe overrides k=v ...]
    python slurm/submit.py cli="DATA --method cgmcr2 --k 10 [k=v ...]" [submitter keys as above]
        (a user's own data: python -m dist_cluster.cluster's arguments, sharded and checked before submitting)

Submitter keys come from slurm/clusters.py (the site file); everything else overrides the recipe's config.
The recipe and its overrides are checked before anything is submitted (bad input: message, exit code 2).
A comma list on a scalar field (`optim.lr=1e-4,3e-4`) submits a job array, one run directory per value.
One task per GPU (`gpus_per_node`); on CPU-only nodes (`gpus_per_node=0`) `tasks_per_node` tasks.
Re-running the same command resumes the run from its newest complete checkpoint.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass

if __package__ in (None, ""):   # run as a script: make `slurm` and `dist_cluster` importable from the checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import submitit
import yaml

from dist_cluster.config import ConfigError, ExperimentConfig, to_dict
from dist_cluster.launch import RECIPES_DIR, build_config, load_recipe
from slurm.job import ClusterJob, TrainJob
from slurm.options import Options, parse, submitter_hint
from slurm.sweep import expand

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Run:
    tag: str                 # "" unless part of a sweep
    cfg: ExperimentConfig
    overrides: list[str]


def plan(opts: Options) -> tuple[list[Run], str]:
    """Build and check every run's config; returns the runs and the submitit folder (with %j)."""
    recipe_path = _recipe_path(opts.recipe)
    config_fn = load_recipe(recipe_path)
    runs = []
    for tag, overrides in expand(config_fn, opts.overrides):
        cfg = build_config(config_fn, overrides)
        base = os.path.abspath(cfg.resolved_run_dir())
        swept_run_dir = any(p.split("=")[0] == "run_dir" for p in tag.split(","))
        cfg.run_dir = os.path.join(base, tag) if tag and not swept_run_dir else base
        runs.append(Run(tag, cfg, overrides))
    dirs = [r.cfg.run_dir for r in runs]
    if len(set(dirs)) != len(dirs):
        raise ConfigError(f"runs of this sweep share a run directory: {dirs}")
    base = os.path.dirname(dirs[0]) if runs[0].tag else dirs[0]
    folder = os.path.join(opts.site.logs.format(run_dir=base), "%j")
    return runs, folder


def _recipe_path(recipe: str) -> str:
    if recipe.endswith(".py"):
        return os.path.abspath(recipe)
    named = os.path.join(RECIPES_DIR, f"{recipe}.py")
    return named if os.path.exists(named) else recipe   # an unknown name: load_recipe lists the known ones


def setup_lines(opts: Options) -> list[str]:
    # The job unpickles slurm.job.TrainJob, so the checkout must be importable wherever the job starts.
    return [f"export PYTHONPATH={shlex.quote(REPO_ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}",
            f"export OMP_NUM_THREADS={opts.site.cpus_per_task}"] + list(opts.site.setup)


def slurm_parameters(opts: Options, job_name: str) -> dict:
    s = opts.site
    params = dict(job_name=job_name, time=opts.timeout_min, nodes=s.nodes, ntasks_per_node=opts.tasks_per_node,
                  cpus_per_task=s.cpus_per_task, signal_delay_s=s.signal_delay_s, setup=setup_lines(opts))
    if s.gpus_per_node > 0:
        params["gres" if s.gres else "gpus_per_node"] = f"gpu:{s.gpus_per_node}" if s.gres else s.gpus_per_node
    if s.mem_gb:
        params["mem"] = f"{int(s.mem_gb)}GB" if s.mem_gb == int(s.mem_gb) else f"{int(s.mem_gb * 1024)}MB"
    for k in ("partition", "account", "qos", "constraint"):
        if getattr(s, k):
            params[k] = getattr(s, k)
    if s.srun_args:
        params["srun_args"] = list(s.srun_args)
    # --requeue: the job stays requeueable on sites whose default (JobRequeue=0) would refuse `scontrol requeue`.
    params["additional_parameters"] = {"requeue": True} | dict(s.sbatch)
    return params


def make_executor(opts: Options, folder: str, job_name: str):
    s = opts.site
    if opts.cluster == "debug":
        return submitit.DebugExecutor(folder)
    if opts.cluster == "local":
        ex = submitit.LocalExecutor(folder, max_num_timeout=s.max_requeue)
        ex.update_parameters(tasks_per_node=opts.tasks_per_node, timeout_min=opts.timeout_min,
                             signal_delay_s=s.signal_delay_s, gpus_per_node=s.gpus_per_node, setup=setup_lines(opts))
        return ex
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise ConfigError("no Slurm client here (sbatch/srun not on PATH): use cluster=local, or for the local test "
                          "cluster `. tools/slurm_local/env.sh` first")
    ex = submitit.SlurmExecutor(folder, max_num_timeout=s.max_requeue)
    ex.update_parameters(**slurm_parameters(opts, job_name))
    return ex


def sbatch_script(opts: Options, folder: str, job_name: str, n_runs: int) -> str:
    """The script submitit writes for this submission (built by submitit itself, without submitting)."""
    from submitit.slurm.slurm import _make_sbatch_string
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(folder)])
    return _make_sbatch_string(command=command, folder=folder, map_count=n_runs if n_runs > 1 else None,
                               **slurm_parameters(opts, job_name))


def submit(opts: Options, runs: list[Run], folder: str) -> list:
    job_name = opts.job_name or runs[0].cfg.name
    ex = make_executor(opts, folder, job_name)
    recipe_path = _recipe_path(opts.recipe)
    fns = [TrainJob(r.cfg, recipe_path if os.path.exists(recipe_path) else None,
                    {"recipe": opts.recipe, "overrides": r.overrides, "sweep": r.tag}) for r in runs]
    jobs = ex.submit_array(fns) if len(fns) > 1 else [ex.submit(fns[0])]
    for job, run in zip(jobs, runs):
        os.makedirs(job.paths.folder, exist_ok=True)
        with open(os.path.join(job.paths.folder, "config.yaml"), "w") as f:
            yaml.safe_dump(to_dict(run.cfg), f, sort_keys=False)
    return jobs


def _describe(opts: Options) -> str:
    gpus = f", {opts.site.gpus_per_node} GPUs/node" if opts.site.gpus_per_node else ""
    return f"{opts.site.nodes} node(s) x {opts.tasks_per_node} task(s){gpus}, cluster={opts.cluster}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        opts = parse(argv)
        if opts.cli:
            return submit_cli(opts)
        runs, folder = plan(opts)
        if opts.dry_run:
            return _dry_run(opts, runs, folder)
        jobs = submit(opts, runs, folder)
    except ConfigError as e:
        print(f"error: {submitter_hint(str(e))}", file=sys.stderr)
        return 2
    except submitit.core.utils.FailedJobError as e:   # sbatch itself refused (partition, account, limits...)
        print(f"error: submission failed:\n{e}", file=sys.stderr)
        return 1
    for job, run in zip(jobs, runs):
        print(f"submitted job {job.job_id} ({_describe(opts)}){' sweep ' + run.tag if run.tag else ''}\n"
              f"  run dir: {run.cfg.run_dir}\n  logs:    {job.paths.folder} (config.yaml, "
              f"{job.job_id}_<rank>_log.out/.err)", flush=True)
    if opts.wait if opts.wait is not None else opts.cluster != "slurm":
        return _wait(jobs)
    return 0


def submit_cli(opts: Options) -> int:
    """cli="ARGS": the data are sharded (cached) and every argument checked here, then one job runs
    `python -m dist_cluster.cluster ARGS` on every task."""
    from dist_cluster.cluster.__main__ import plan as plan_cli
    from dist_cluster.cluster.arrays import InputError
    argv = shlex.split(opts.cli)
    try:
        args, data, run_dir, _ = plan_cli(argv, opts.site.nodes * opts.tasks_per_node)
    except (InputError, SystemExit) as e:
        raise ConfigError(str(e) if isinstance(e, InputError) else f"bad cli arguments: {opts.cli!r}") from None
    argv = [a for a in argv] + ([] if args.run_dir else ["--run-dir", run_dir])
    folder = os.path.join(opts.site.logs.format(run_dir=run_dir), "%j")
    job_name = opts.job_name or f"{args.method}_{data.name}"
    if opts.dry_run:
        print(f"# {opts.cluster} job {job_name}: python -m dist_cluster.cluster {shlex.join(argv)}\n"
              f"# {_describe(opts)}, folder {folder}\n# dry run: nothing submitted")
        return 0
    job = make_executor(opts, folder, job_name).submit(ClusterJob(argv, run_dir))
    print(f"submitted job {job.job_id} ({_describe(opts)})\n  run dir: {run_dir}\n  logs:    {job.paths.folder}",
          flush=True)
    if opts.wait if opts.wait is not None else opts.cluster != "slurm":
        job.results()
        print(f"job {job.job_id} finished: {run_dir}/clusters.csv", flush=True)
    return 0


def _dry_run(opts: Options, runs: list[Run], folder: str) -> int:
    job_name = opts.job_name or runs[0].cfg.name
    if opts.cluster == "slurm":
        print("# sbatch script\n" + sbatch_script(opts, folder, job_name, len(runs)))
    else:
        print(f"# {opts.cluster} run: {_describe(opts)}, folder {folder}")
    for i, run in enumerate(runs):
        head = f"# resolved config{f' [array task {i}: {run.tag}]' if run.tag else ''}"
        print(head + "\n" + yaml.safe_dump(to_dict(run.cfg), sort_keys=False))
    print(f"# dry run: nothing submitted ({len(runs)} run(s))")
    return 0


def _wait(jobs) -> int:
    try:
        for job in jobs:
            summary = job.results()[0]
            print(f"job {job.job_id} finished: step {summary.get('global_step')}, metrics {summary.get('metrics')}, "
                  f"requeues {summary.get('requeue_count')}", flush=True)
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
