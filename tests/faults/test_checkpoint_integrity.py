"""Checkpoints that prove themselves: a damaged newest checkpoint is named, set aside as `<tag>.damaged` and the
previous good one resumed; none good is an `error:` line and exit 2; a full disk says so.

One toy run (ZeRO 1, so an optimizer-states file exists) makes two checkpoints; each case damages a copy. Which
file is damaged and how only changes what verification reports, never what the resume loads (the damaged tag
is set aside before DeepSpeed sees it), so every file x damage pair is checked in-process on resume_tag, and one
pair per file runs the real resume to the end.
"""
import json
import os
import shutil
import subprocess

import pytest
import torch
from toy_runs import SHORT, checkpoint_weights, final_weights, run_toy, tree_hashes

from dist_cluster import checkpoint as ckpt

COMMON = [*SHORT, "engine.zero_stage=1", "engine.max_steps=20", "ckpt.every_steps=10", "ckpt.keep_last=3",
          "engine.final_eval=false"]
GOOD, NEWEST = "step000000010", "step000000020"
FILES = ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt", "rank0.pt", "COMPLETE"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("base")
    run_toy(run_dir, *COMMON)
    d = str(run_dir / "checkpoints")
    assert ckpt.complete_tags(d) == [GOOD, NEWEST]
    assert all(ckpt.verify(d, t) == [] for t in (GOOD, NEWEST))
    return run_dir


def copy_run(base, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(base, run_dir)
    return run_dir


def damage(path, kind: str) -> str:
    """Damage a file in place; returns the problem verification must report."""
    data = open(path, "rb").read()
    name = os.path.basename(path)
    if kind == "truncate":
        open(path, "wb").write(data[: len(data) // 2])
        return f"{name}: truncated: {len(data) // 2} of {len(data)} bytes"
    if kind == "empty":
        open(path, "wb").close()
        return f"{name}: truncated: 0 of {len(data)} bytes"
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    open(path, "wb").write(bytes(flipped))
    return f"{name}: checksum mismatch"


def expected(fname: str, kind: str, said: str) -> str:
    # COMPLETE cannot list its own size: cut short it is unreadable JSON; a flipped bit breaks the JSON or its
    # own checksum
    if fname != "COMPLETE":
        return said
    return "COMPLETE: unreadable" if kind != "flip" else "COMPLETE: "


@pytest.mark.parametrize("kind", ["truncate", "empty", "flip"])
@pytest.mark.parametrize("fname", FILES)
def test_damaged_newest_is_named_and_set_aside(base, tmp_path, capsys, fname, kind):
    d = tmp_path / "checkpoints"
    shutil.copytree(base / "checkpoints", d)
    said = damage(d / NEWEST / fname, kind)
    assert ckpt.resume_tag(str(d)) == GOOD
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"warning: checkpoint {d / NEWEST} is damaged (")
    assert expected(fname, kind, said) in err[0]
    assert f"moved to {d / NEWEST}.damaged, resuming from {d / GOOD}" in err[0]
    assert not (d / NEWEST).exists() and (d / f"{NEWEST}.damaged" / fname).exists()
    assert ckpt.complete_tags(str(d)) == [GOOD]
    assert (d / "latest").read_text() == GOOD   # DeepSpeed's pointer follows
    assert ckpt.latest_finite(str(d)) == GOOD


@pytest.mark.parametrize("fname,kind", [(FILES[0], "truncate"), (FILES[1], "empty"), (FILES[2], "flip"),
                                        (FILES[3], "flip")])
def test_resume_after_damage_finishes_equal_to_the_uninterrupted_run(base, tmp_path, fname, kind):
    run_dir = copy_run(base, tmp_path)
    d = run_dir / "checkpoints"
    said = damage(d / NEWEST / fname, kind)
    res = run_toy(run_dir, *COMMON)
    warnings = [x for x in res.stderr.splitlines() if x.startswith("warning: checkpoint")]
    assert len(warnings) == 1 and expected(fname, kind, said) in warnings[0], res.stderr[-3000:]
    assert f"resumed from {d}/{GOOD} at step 10" in res.stdout
    assert json.load(open(run_dir / "summary.json"))["resumed_from"] == GOOD
    assert ckpt.complete_tags(str(d)) == [GOOD, NEWEST] and ckpt.verify(str(d), NEWEST) == []
    assert (d / f"{NEWEST}.damaged").is_dir() and (d / "latest").read_text() == NEWEST
    want = checkpoint_weights(str(base / "checkpoints"), NEWEST)   # resumes are bitwise equal
    got = final_weights(run_dir)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_every_checkpoint_damaged_exits_2_naming_each_and_changes_nothing(base, tmp_path):
    run_dir = copy_run(base, tmp_path)
    d = run_dir / "checkpoints"
    damage(d / NEWEST / FILES[0], "truncate")
    damage(d / GOOD / FILES[1], "flip")
    before, entries = tree_hashes(d), sorted(os.listdir(run_dir))
    summary, records = (run_dir / "summary.json").read_bytes(), _records(run_dir)
    res = run_toy(run_dir, *COMMON, ok=False)
    assert res.returncode == 2, res.stderr[-3000:]
    errors = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert f"{d / NEWEST} is damaged ({FILES[0]}: truncated:" in errors[0]
    assert f"{d / GOOD} is damaged ({FILES[1]}: checksum mismatch)" in errors[0]
    assert tree_hashes(d) == before and sorted(os.listdir(run_dir)) == entries
    assert (run_dir / "summary.json").read_bytes() == summary
    # the engine logs its derived sizes before it resumes; nothing was trained or evaluated
    assert [r for r in _records(run_dir) if r["kind"] != "derived"] == [r for r in records if r["kind"] != "derived"]


def _records(run_dir) -> list[dict]:
    return [json.loads(x) for x in open(run_dir / "metrics.jsonl")]


def test_checkpoint_without_file_list_loads_with_one_warning(base, tmp_path, capsys):
    d = tmp_path / "checkpoints"
    shutil.copytree(base / "checkpoints", d)
    for tag in (GOOD, NEWEST):   # what a COMPLETE written before file lists looks like
        meta = ckpt.read_meta(str(d), tag)
        del meta["files"], meta["marker_sha256"]
        (d / tag / "COMPLETE").write_text(json.dumps(meta))
    damage(d / NEWEST / FILES[0], "flip")   # undetectable without the list: loaded as is
    assert ckpt.verify(str(d), NEWEST) is None
    assert ckpt.resume_tag(str(d)) == NEWEST
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: checkpoint {d / NEWEST} predates recorded file checksums; loading it unverified"]


def test_two_processes_agree_on_the_fallback(tmp_path):
    """Every rank hashes a share at save time; rank 0 alone verifies on resume and broadcasts the tag."""
    common = [*SHORT, "engine.zero_stage=1", "data.batch_size=16", "engine.max_steps=20", "ckpt.every_steps=10",
              "ckpt.keep_last=3", "engine.final_eval=false"]
    run_toy(tmp_path, *common, nproc=2)
    d = tmp_path / "checkpoints"
    meta = ckpt.read_meta(str(d), NEWEST)
    assert {"rank0.pt", "rank1.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= set(meta["files"])
    said = damage(d / NEWEST / "rank1.pt", "truncate")
    res = run_toy(tmp_path, *common, nproc=2)
    assert said in res.stderr and f"resumed from {d}/{GOOD} at step 10" in res.stdout, res.stderr[-3000:]
    assert ckpt.verify(str(d), NEWEST) == [] and json.load(open(tmp_path / "summary.json"))["global_step"] == 20


# ---- a full disk ---------------------------------------------------------------------------------------------
@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a 40 MB tmpfs (needs root): {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_says_so_and_keeps_the_previous_checkpoint(small_tmpfs):
    # hidden=12000: 14 MB a checkpoint; the first two fit in 40 MB, the third does not
    common = [*SHORT, "engine.zero_stage=1", "method.hidden=12000", "engine.max_steps=30", "ckpt.every_steps=10",
              "ckpt.keep_last=3", "engine.final_eval=false"]
    run_dir = small_tmpfs / "run"
    d = run_dir / "checkpoints"
    res = run_toy(run_dir, *common, ok=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: [Errno 28] no space left on device saving checkpoint " f"{d}/step000000030: "), last
    assert f"bytes free in {d} when the write failed; the partial checkpoint (" in last
    assert f"{d}/{NEWEST} stays selected" in last
    assert "unexpected pos" not in last and "enforce fail" not in last
    assert sorted(t for t in os.listdir(d) if t.startswith("step")) == [GOOD, NEWEST]   # no partial folder
    assert ckpt.latest(str(d)) == NEWEST and (d / "latest").read_text() == NEWEST
    assert ckpt.verify(str(d), NEWEST) == []
    subprocess.run(["mount", "-o", "remount,size=80m", str(small_tmpfs)], check=True)   # space freed
    res = run_toy(run_dir, *common)
    assert f"resumed from {d}/{NEWEST} at step 20" in res.stdout
    assert ckpt.latest(str(d)) == "step000000030" and ckpt.verify(str(d), "step000000030") == []
