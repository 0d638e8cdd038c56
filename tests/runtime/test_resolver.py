"""Every launcher's environment maps to the same rank view."""
import pytest

from dist_cluster.distributed.env import DistEnv, first_slurm_host, resolve

CASES = {
    "single": ({}, DistEnv()),
    "torchrun": ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "n0",
                  "MASTER_PORT": "1234", "TORCHELASTIC_RUN_ID": "x"},
                 DistEnv(3, 8, 1, 2, "n0", 1234, "torchrun")),
    "deepspeed": ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_SIZE": "2", "CROSS_RANK": "0",
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
                  DistEnv(1, 2, 1, 2, "127.0.0.1", 29500, "deepspeed")),
    "srun": ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_NUM_NODES": "2",
              "SLURM_NTASKS_PER_NODE": "4", "SLURM_JOB_NODELIST": "gpu[003-004]", "SLURM_JOB_ID": "777",
              "SLURM_STEP_ID": "0"},
             DistEnv(5, 8, 1, 4, "gpu003", 20777, "slurm")),
    "submitit": ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "SLURM_JOB_NUM_NODES": "1",
                  "SLURM_NTASKS_PER_NODE": "2(x1)", "SLURM_JOB_NODELIST": "localhost", "SLURM_JOB_ID": "12",
                  "SLURM_STEPID": "0", "SUBMITIT_EXECUTOR": "slurm"},
                 DistEnv(0, 2, 0, 2, "localhost", 20012, "slurm")),
    "sbatch script (not a task)": ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "5"}, DistEnv()),
}


@pytest.mark.parametrize("name", list(CASES))
def test_launcher_env_maps_to_one_view(name, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")   # no scontrol: the nodelist parser is used
    environ, expected = CASES[name]
    assert resolve(environ) == expected


def test_nodelist_parsing(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert first_slurm_host("node[12-14,20],other1") == "node12"
    assert first_slurm_host("single") == "single"


def test_export_sets_torch_variables():
    env = {}
    DistEnv(2, 4, 0, 2, "h", 99, "slurm").export(env)
    assert env == {"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h",
                   "MASTER_PORT": "99"}
