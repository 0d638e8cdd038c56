"""The README's "Your own data" example, run as written (commands in a fresh folder, then the Python block)."""
import csv
import json
import os
import re
import subprocess
import sys

from cli_helpers import ENV, ROOT
from inprocess import cluster_cli_in_process, run_in_process


def section_blocks(lang: str) -> list[str]:
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def run_as_written(args: list[str], cwd) -> subprocess.CompletedProcess:
    """`python *args` in cwd; `-c CODE` and `-m dist_cluster.cluster` through their entry points in this process
    (the interpreter's start-up is most of a short run's time)."""
    env = {"DIST_CLUSTER_CACHE": ENV["DIST_CLUSTER_CACHE"]}
    if args[:2] == ["-m", "dist_cluster.cluster"]:
        return cluster_cli_in_process(args[2:], env=env, cwd=cwd)
    if args[0] == "-c" and len(args) == 2:
        return run_in_process(lambda _: exec(args[1], {"__name__": "__main__"}), [], env=env, cwd=cwd)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=dict(ENV, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=600)


def test_readme_commands_and_python_run_as_written(tmp_path):
    (commands,) = section_blocks("bash")
    for line in filter(None, commands.strip().splitlines()):
        assert line.startswith("python ")
        res = run_as_written(_split(line[len("python "):]), tmp_path)
        assert res.returncode == 0, line + "\n" + res.stdout[-1500:] + res.stderr[-2500:]
    rows = list(csv.reader(open(tmp_path / "runs" / "my_digits" / "clusters.csv")))
    assert rows[0] == ["index", "cluster", "confidence"] and len(rows) == 1798
    table = json.load(open(tmp_path / "runs" / "my_digits" / "results_table.json"))
    assert table["data"] == "digits_X" and table["rows"]["cgmcr2"]["acc"] > 0.4
    unic = json.load(open(tmp_path / "runs" / "my_digits_unic" / "summary.json"))
    assert unic["n_init"]["seeds"] == [0, 1, 2] and "acc" not in unic["table"]["rows"]["unic"]
    (code,) = section_blocks("python")
    res = run_as_written(["-c", code], tmp_path)
    assert res.returncode == 0, res.stderr[-2500:]
    assert "(1797, 64)" in res.stdout


def _split(args: str) -> list[str]:
    import shlex
    return shlex.split(args)
