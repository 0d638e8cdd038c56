"""tools/setup_system.sh and tools/slurm_local/env.sh: idempotent, quick, and harmless where Slurm cannot start."""
import os
import shutil
import subprocess
import time

import pytest
from slurm_utils import ROOT


def test_setup_system_is_quick_and_idempotent_once_installed():
    t0 = time.time()
    res = subprocess.run(["bash", "tools/setup_system.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    res = subprocess.run(["bash", "tools/setup_system.sh"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "all present" in res.stdout, res.stdout + res.stderr
    assert time.time() - t0 < 600


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to another user")
def test_env_sh_leaves_the_environment_alone_when_slurm_cannot_start():
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                          '. tools/slurm_local/env.sh && echo "rc=$? conf=${SLURM_CONF:-unset}"'],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "rc=0 conf=unset", res.stdout + res.stderr
    assert "needs root" in res.stderr


@pytest.mark.slurm
def test_env_sh_exports_a_working_slurm(local_slurm):
    res = subprocess.run(["sh", "-c", ". tools/slurm_local/env.sh && sinfo -h -o %T && command -v sacct"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    state, sacct = res.stdout.split()
    assert state in ("idle", "mixed", "allocated") and sacct.endswith("/bin/sacct") and sacct != "/usr/bin/sacct"
