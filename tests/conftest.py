import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "recipes"))   # the recipes' shared bases: `import common.unic`
os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture(scope="session")
def local_slurm():
    """The private one-node Slurm of tools/slurm_local (started if needed; left running for the next user)."""
    res = subprocess.run(["bash", os.path.join(ROOT, "tools", "slurm_local", "start.sh")], capture_output=True,
                         text=True, timeout=180)
    if res.returncode == 3 and os.geteuid() != 0:
        pytest.fail("the local Slurm needs root to start (run the tests as root, as `make test` does): "
                    + res.stderr.strip().splitlines()[-1])
    assert res.returncode == 0, f"tools/slurm_local/start.sh failed:\n{res.stdout}\n{res.stderr}"
    m = re.search(r"^export SLURM_CONF=(\S+) PATH=(\S+):\$PATH$", res.stdout, re.M)
    assert m, res.stdout
    os.environ["SLURM_CONF"] = m.group(1)
    if m.group(2) not in os.environ["PATH"].split(":"):
        os.environ["PATH"] = m.group(2) + ":" + os.environ["PATH"]
    return m.group(1)


# Modules whose tests launch whole runs, longest first: under pytest-xdist they start first, so that no long
# test is left for one worker at the end while the other idles.
LONG_FIRST = ["bench/test_bench_quick.py", "cgmcr2/test_two_processes.py", "slurm/test_slurm_jobs.py",
              "user_data/test_readme_example.py", "pici/test_pici_runs.py", "user_data/test_estimators.py",
              "runtime/test_engine.py", "faults/test_recovery.py", "unic/test_unic_runs.py", "fec/test_fec_runs.py",
              "pici/test_pici_slurm.py", "user_data/test_slurm_cli.py", "cgmcr2/test_recipes.py",
              "faults/test_preemption.py", "faults/test_checkpoint_integrity.py", "slurm/test_slurm_signals.py",
              "faults/test_user_errors.py", "faults/test_resume_identity.py"]


def pytest_collection_modifyitems(config, items):
    """Long modules first; under pytest-xdist the jobs on the one local Slurm node run from one worker."""
    rank = {m: i for i, m in enumerate(LONG_FIRST)}
    items.sort(key=lambda it: rank.get(os.path.relpath(str(it.path), os.path.join(ROOT, "tests")), len(rank)))
    for item in items:
        if "local_slurm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A test that changes torch's thread count (e.g. by starting a run in-process) does not change the next
    one's: results compared bit for bit can depend on it."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


if os.environ.get("PYTEST_XDIST_WORKER"):      # workers share the cores: one thread each, in the runs they start too
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
