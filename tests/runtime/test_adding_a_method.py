"""README's "Adding a method": its two files, taken from the README as written, train on 1 and 2 processes."""
import json
import os
import re
import subprocess
import sys

import pytest

from dist_cluster.distributed.spawn import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_files() -> dict[str, str]:
    """The code blocks of the section, keyed by the path in their first comment."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Adding a method", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    return {re.match(r"# (\S+?):", b).group(1): b for b in blocks}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    for path, code in readme_files().items():
        os.makedirs(root / os.path.dirname(path), exist_ok=True)
        (root / path).write_text(code)
    return root


@pytest.mark.parametrize("nproc", [1, 2])
def test_the_readme_method_trains_under_the_launchers(project, tmp_path, nproc):
    assert set(readme_files()) == {"mymethod/__init__.py", "recipes/soft_kmeans.py"}
    env = dict(os.environ, PYTHONPATH=str(project), OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                    "--nproc_per_node", "2", "--master_port",
                                                    str(free_port())]
    res = subprocess.run(launcher + [str(project / "recipes" / "soft_kmeans.py"), f"run_dir={tmp_path}",
                                     f"data.batch_size={64 // nproc}", "engine.log_every=5"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=project)
    assert res.returncode == 0, res.stderr[-3000:]
    losses = [r["loss"] for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if r["kind"] == "train"]
    assert len(losses) >= 10 and losses[-1] < 0.7 * losses[0]
    assert json.load(open(tmp_path / "summary.json"))["epochs_done"] == 3
