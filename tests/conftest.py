import os
import re
import subprocess
import sys

import pytest

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
