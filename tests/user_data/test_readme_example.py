"""The README's "Your own data" example, run as written (commands in a fresh folder, then the Python block)."""
import csv
import json
import os
import re
import subprocess
import sys

from cli_helpers import ENV, ROOT


def section_blocks(lang: str) -> list[str]:
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def test_readme_commands_and_python_run_as_written(tmp_path):
    env = dict(ENV, PYTHONPATH=ROOT)
    (commands,) = section_blocks("bash")
    for line in filter(None, commands.strip().splitlines()):
        assert line.startswith("python ")
        cmd = [sys.executable] + _split(line[len("python "):])
        res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, line + "\n" + res.stdout[-1500:] + res.stderr[-2500:]
    rows = list(csv.reader(open(tmp_path / "runs" / "my_digits" / "clusters.csv")))
    assert rows[0] == ["index", "cluster", "confidence"] and len(rows) == 1798
    table = json.load(open(tmp_path / "runs" / "my_digits" / "results_table.json"))
    assert table["data"] == "digits_X" and table["rows"]["cgmcr2"]["acc"] > 0.4
    unic = json.load(open(tmp_path / "runs" / "my_digits_unic" / "summary.json"))
    assert unic["n_init"]["seeds"] == [0, 1, 2] and "acc" not in unic["table"]["rows"]["unic"]
    (code,) = section_blocks("python")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2500:]
    assert "(1797, 64)" in res.stdout


def _split(args: str) -> list[str]:
    import shlex
    return shlex.split(args)
