"""What a run prints about its own progress when it is not on a terminal: a few lines per slow step, the
training's total steps, one ETA per stage, and no echo of the result table as final/* scalars."""
import json
from types import SimpleNamespace

from dist_cluster.logging import MetricLogger, progress
from dist_cluster.logging.progress import Progress, TrainingPlan, duration, timed
from dist_cluster.methods.base import Stage


def test_progress_in_a_log_is_a_line_per_tenth(capsys):
    bar = Progress(1000, "train features", unit="img", tty=False)
    for _ in range(100):
        bar.update(10)
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train features: 1,000 img ..." and lines[-1].startswith("train features: 1,000 img in ")
    assert len(lines) == 11 and "(50%)" in lines[5] and "left" in lines[5]     # start, 10%..90%, end


def test_progress_silent_on_other_ranks_and_with_nothing_to_do(capsys):
    for bar in (Progress(10, "x", enabled=False, tty=False), Progress(0, "x", tty=False)):
        bar.update(5)
        bar.close()
    with timed("mining", enabled=False):
        pass
    assert capsys.readouterr().out == ""


def test_timed_brackets_a_step(capsys):
    with timed("mining neighbours"):
        pass
    assert capsys.readouterr().out.splitlines() == ["mining neighbours ...", "mining neighbours: done in 0.0 s"]


def test_training_plan_total_and_one_eta_per_stage(capsys, monkeypatch):
    clock = iter([0.0, 4.0, 8.0, 26.0])
    monkeypatch.setattr(progress, "time", SimpleNamespace(time=lambda: next(clock)))
    plan = TrainingPlan([Stage("warmup", 2), Stage("finetune", 2)], steps_per_epoch=3, done=0, global_batch=512)
    for stage, step in (("warmup", 0), ("warmup", 3), ("finetune", 6), ("finetune", 9)):
        plan.epoch_start(stage, step)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("training: 12 optimizer steps (warmup 2 epochs, finetune 2 epochs; 3 steps of 512 samples "
                      "per epoch)")
    assert out[1] == "first warmup epoch: 4.0 s for 3 steps; about 12 s left for the remaining 9 steps at this pace"
    assert out[2].startswith("first finetune epoch: 18 s for 3 steps; about 18 s left") and len(out) == 3
    assert duration(75) == "1 min 15 s" and duration(7300) == "2 h 01 min"


def test_final_table_scalars_are_logged_but_not_echoed(tmp_path, capsys):
    log = MetricLogger(str(tmp_path), enabled=True, tensorboard=False)
    log.log({"final/cgmcr2/acc": 0.9, "final/kmeans/acc": 0.8}, 10, kind="eval")
    log.log({"acc": 0.9}, 10, kind="eval")
    log.close()
    assert capsys.readouterr().out.splitlines() == ["[eval step 10] acc=0.9"]
    recs = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert recs[0]["final/kmeans/acc"] == 0.8 and len(recs) == 2


def test_training_plan_counts_to_max_steps(capsys):
    TrainingPlan([Stage("unic", 30)], steps_per_epoch=10, done=4, global_batch=128, max_steps=50)
    assert capsys.readouterr().out == ("training: 50 optimizer steps (unic 30 epochs; 10 steps of 128 samples per "
                                       "epoch), stopping at engine.max_steps=50, 4 already done\n")
