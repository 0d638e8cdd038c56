"""`python -m dist_cluster.bench --quick`: every case runs on small inputs and every exactness check holds.

One test per case, through the bench's own `main` in the test's process, so the suite's workers share the
cases: the bench's ranks are the suite's persistent worlds (`tests/dist_utils.run_world`, real gloo
processes) and its single-process recipe runs go through the recipe's entry point in-process
(`tests/inprocess.py`); runs under torchrun and the cluster CLI's runs stay processes. The command itself
runs once, on its cheapest case, to check what the shell sees."""
import os
import subprocess
import sys
import time

import pytest

from dist_cluster.bench.registry import CASES
from tests.dist_utils import run_world
from tests.inprocess import run_in_process, run_recipe_in_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# a reference each of these cases is checked against
REFERENCED = ("kmeans", "knn", "data", "coding_rate", "fec", "unic", "cluster_cli")


def _rows(stdout: str) -> list[dict]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:]]


def _recipe_in_process(original):
    def run_recipe(recipe, overrides, run_dir, nproc=1, threads=1):
        if nproc != 1:
            return original(recipe, overrides, run_dir, nproc, threads)
        os.makedirs(run_dir, exist_ok=True)
        t = time.time()
        res = run_recipe_in_process(recipe, [f"run_dir={os.path.abspath(run_dir)}", "ckpt.resume=false",
                                             "engine.progress=false", *overrides],
                                    env={"OMP_NUM_THREADS": str(threads)}, cwd=ROOT)
        if res.returncode != 0:
            raise RuntimeError(f"{recipe} {overrides} failed ({res.returncode}):\n{res.stdout[-2000:]}\n"
                               f"{res.stderr[-3000:]}")
        return time.time() - t
    return run_recipe


def _check(res, out, cases):
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = _rows(res.stdout)
    assert {r["case"] for r in rows} == set(cases)
    checked = [r for r in rows if r["exact"] != "-"]
    assert all(r["exact"] == "yes" for r in checked), [r for r in checked if r["exact"] != "yes"]
    for case in set(cases) & set(REFERENCED):
        assert any(r["case"] == case and r["exact"] == "yes" for r in rows), case
    assert {f"{c}.jsonl" for c in cases} <= set(os.listdir(out))


@pytest.mark.parametrize("case", CASES)
def test_quick_case_exits_0_and_every_exactness_check_holds(case, tmp_path, monkeypatch):
    import dist_cluster.bench.recipe_runs as recipe_runs
    import dist_cluster.distributed.spawn as spawn
    from dist_cluster.bench.__main__ import main
    monkeypatch.setattr(spawn, "run_world", run_world)
    in_process = _recipe_in_process(recipe_runs.run_recipe)
    for name in ("engine", "cgmcr2", "pici"):          # they import run_recipe by name
        monkeypatch.setattr(f"dist_cluster.bench.{name}.run_recipe", in_process)
    out = tmp_path / "bench"
    res = run_in_process(lambda argv: sys.exit(main(argv)), ["--quick", case, "--out", str(out)], cwd=ROOT)
    _check(res, out, [case])


def test_the_command_exits_0_with_its_table(tmp_path):
    out = tmp_path / "bench"
    res = subprocess.run([sys.executable, "-m", "dist_cluster.bench", "--quick", "fec", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, DS_ACCELERATOR="cpu"))
    _check(res, out, ["fec"])
