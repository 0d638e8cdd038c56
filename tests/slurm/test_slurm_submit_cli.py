"""slurm/submit.py without a cluster: key splitting, time limits, sweeps, dry runs, the job class, local mode."""
import dataclasses
import os
import subprocess
import sys

import cloudpickle
import pytest
import submitit
from slurm_utils import FAST, ROOT, TOY

from dist_cluster.config import ConfigError, ExperimentConfig, register_preset, to_dict
from dist_cluster.data.config import DataConfig
from dist_cluster.launch import load_recipe
from slurm.job import TrainJob, read_history
from slurm.options import parse, parse_time, submit_keys
from slurm.submit import main, plan
from slurm.sweep import expand, split_top_level

SUBMIT = [sys.executable, os.path.join(ROOT, "slurm", "submit.py")]


def test_submitter_keys_never_shadow_a_config_field():
    assert not set(submit_keys()) & {f.name for f in dataclasses.fields(ExperimentConfig)}


def test_parse_splits_submitter_keys_from_recipe_overrides():
    o = parse([f"recipe={TOY}", "nodes=2", "gpus_per_node=8", "partition=gpu", "account=lab", "qos=high",
               "time=1-00:30", "mem_gb=480", "constraint=a100", "sbatch.exclusive=true", "sbatch.mail-type=END",
               "srun_args=--cpu-bind=none --mpi=pmix", "optim.lr=3e-4", "engine.max_steps=5", "--dry-run"])
    assert (o.site.nodes, o.tasks_per_node, o.site.partition, o.site.account, o.site.qos) == \
        (2, 8, "gpu", "lab", "high")
    assert o.timeout_min == 24 * 60 + 30 and o.site.mem_gb == 480.0 and o.site.constraint == "a100"
    assert o.site.sbatch == {"exclusive": True, "mail-type": "END"}
    assert o.site.srun_args == ["--cpu-bind=none", "--mpi=pmix"]
    assert o.overrides == ["optim.lr=3e-4", "engine.max_steps=5"] and o.dry_run and o.cluster == "slurm"


def test_cpu_only_nodes_take_tasks_per_node_from_the_config():
    o = parse([f"recipe={TOY}", "site=localtest"])
    assert o.site.gpus_per_node == 0 and o.tasks_per_node == 2
    assert parse([f"recipe={TOY}", "gpus_per_node=0", "tasks_per_node=5"]).tasks_per_node == 5


@pytest.mark.parametrize("text,minutes", [("90", 90), ("1:30", 2), ("02:00:00", 120), ("1-0", 1440),
                                          ("2-03:04", 2 * 1440 + 184), ("0-00:00:30", 1)])
def test_slurm_time_formats(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("argv,msg", [(["nodes=two"], "expected int"), (["cluster=k8s"], "expected one of"),
                                      (["cluster=local", "nodes=2"], "use nodes=1"), (["time=soon"], "'time'"),
                                      (["site=mars"], "unknown site 'mars'"), (["--fast"], "unknown flag"),
                                      ([], "missing recipe")])
def test_bad_submitter_input_is_a_clear_config_error(argv, msg):
    argv = argv if argv == [] else [f"recipe={TOY}"] + argv
    with pytest.raises(ConfigError, match=msg):
        parse(argv)


def test_top_level_split_keeps_braces_brackets_and_escaped_commas():
    assert split_top_level("1e-4,3e-4") == ["1e-4", "3e-4"]
    assert split_top_level("/d/{a,b}-{000..009}.tar") == ["/d/{a,b}-{000..009}.tar"]
    assert split_top_level("[0.9,0.99]") == ["[0.9,0.99]"]
    assert split_top_level(r"a\,b,c") == [r"a\,b", "c"]


def test_sweeps_split_scalar_fields_only():
    fn = load_recipe(TOY)
    runs = expand(fn, ["optim.lr=1e-4,3e-4", "optim.betas=0.9,0.99", "seed=1,2", "engine.max_steps=3",
                       "data.train=/d/{a,b}-{0..3}.tar", r"name=a\,b"])
    assert len(runs) == 4
    tags = [t for t, _ in runs]
    assert tags == ["optim.lr=1e-4,seed=1", "optim.lr=1e-4,seed=2", "optim.lr=3e-4,seed=1", "optim.lr=3e-4,seed=2"]
    tag, overrides = runs[1]
    assert "optim.betas=0.9,0.99" in overrides and "name=a,b" in overrides and "seed=2" in overrides
    assert "data.train=/d/{a,b}-{0..3}.tar" in overrides
    assert expand(fn, ["optim.lr=1e-3"]) == [("", ["optim.lr=1e-3"])]


def test_a_section_sweeps_over_presets_but_not_over_unknown_names():
    register_preset(DataConfig, "sweep_test_a")(lambda: DataConfig(name="a"))
    register_preset(DataConfig, "sweep_test_b")(lambda: DataConfig(name="b"))
    fn = load_recipe(TOY)
    assert [t for t, _ in expand(fn, ["data=sweep_test_a,sweep_test_b"])] == ["data=sweep_test_a", "data=sweep_test_b"]
    assert len(expand(fn, ["data=sweep_test_a,nope"])) == 1   # left whole: building the config reports it


def test_plan_gives_each_sweep_value_its_own_absolute_run_dir(tmp_path):
    runs, folder = plan(parse([f"recipe={TOY}", f"run_dir={tmp_path}/r", "optim.lr=0.01,0.05"]))
    assert [r.cfg.run_dir for r in runs] == [f"{tmp_path}/r/optim.lr=0.01", f"{tmp_path}/r/optim.lr=0.05"]
    assert [r.cfg.optim.lr for r in runs] == [0.01, 0.05]
    assert folder == f"{tmp_path}/r/slurm/%j"
    with pytest.raises(ConfigError, match="unknown config key 'optim.lrr'; closest valid keys: optim.lr"):
        plan(parse([f"recipe={TOY}", "optim.lrr=0.01,0.05"]))


def test_bad_recipe_or_override_exits_2_with_a_message(tmp_path, capsys):
    assert main([f"recipe={TOY}", f"run_dir={tmp_path}/r", "optim.lr=fast"]) == 2
    assert "error: bad value 'fast' for 'optim.lr': expected float" in capsys.readouterr().err
    assert main([f"recipe={TOY}", f"run_dir={tmp_path}/r", "engine.max_step=2"]) == 2
    assert "unknown config key 'engine.max_step'; closest valid keys: engine.max_steps" in capsys.readouterr().err
    assert main(["recipe=no_such_recipe", f"run_dir={tmp_path}/r"]) == 2
    assert "unknown recipe 'no_such_recipe'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "r")


def test_unknown_undotted_key_suggests_the_submitter_key(tmp_path, capsys):
    assert main([f"recipe={TOY}", f"run_dir={tmp_path}/r", "node=2"]) == 2
    assert "submitter keys: nodes" in capsys.readouterr().err


def test_dry_run_prints_the_sbatch_script_and_config_and_submits_nothing(tmp_path):
    res = subprocess.run(SUBMIT + [f"recipe={TOY}", f"run_dir={tmp_path}/r", "nodes=2", "gpus_per_node=8",
                                   "partition=gpu", "account=lab", "qos=high", "time=01:30:00", "constraint=a100",
                                   "cpus_per_task=10", "mem_gb=480", "srun_args=--cpu-bind=none",
                                   "sbatch.exclusive=true", "optim.lr=1e-4,3e-4", "--dry-run"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --qos=high", "#SBATCH --time=90",
                 "#SBATCH --constraint=a100", "#SBATCH --cpus-per-task=10", "#SBATCH --mem=480GB",
                 "#SBATCH --exclusive", "#SBATCH --requeue", "#SBATCH --signal=USR2@120", "#SBATCH --array=0-1%2",
                 "--cpu-bind=none",
                 f"{tmp_path}/r/slurm/%A_%a/%A_%a_%t_log.out", "-m submitit.core._submit",
                 f"run_dir: {tmp_path}/r/optim.lr=1e-4", "lr: 0.0003", "dry run: nothing submitted (2 run(s))"):
        assert line in out, line
    assert not os.path.exists(tmp_path / "r")


def test_job_checkpoint_hands_back_a_fresh_job_for_the_same_config(tmp_path):
    cfg = load_recipe(TOY)()
    cfg.run_dir = str(tmp_path / "run")
    job = TrainJob(cfg, TOY, {"recipe": "toy"})
    delayed = job.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    fresh = delayed.function
    assert isinstance(fresh, TrainJob) and fresh is not job and fresh.recipe_path == TOY
    # What travels to the requeued job: the pickled config, rebuilt after the recipe is loaded.
    back = cloudpickle.loads(cloudpickle.dumps(fresh))
    assert back._cfg is None and to_dict(back.cfg) == to_dict(cfg)
    assert [r["event"] for r in read_history(cfg.run_dir)] == ["requeue"]


@pytest.mark.slow
def test_local_cluster_runs_the_job_on_two_tasks(tmp_path):
    res = subprocess.run(SUBMIT + [f"recipe={TOY}", "cluster=local", "site=localtest", f"run_dir={tmp_path}/r",
                                   "engine.max_steps=4", *FAST], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "finished: step 4" in res.stdout and "requeues 0" in res.stdout
    history = read_history(tmp_path / "r")
    assert [(h["event"], h.get("tasks")) for h in history] == [("start", 2), ("end", None)]
    folder = tmp_path / "r" / "slurm" / history[0]["job_id"]
    assert (folder / "config.yaml").exists()
    for rank in (0, 1):
        assert f"task {rank}/2" in (folder / f"{history[0]['job_id']}_{rank}_log.out").read_text()
