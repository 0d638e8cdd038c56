"""engine.final_eval=false: a run ends after its last step and checkpoint, with no final evaluation or figures."""
import json
import os

from toy_runs import SHORT, run_toy

from dist_cluster import checkpoint as ckpt
from dist_cluster.logging import read_records


def test_a_run_without_final_eval_ends_with_no_metrics_and_no_figures(tmp_path):
    run_toy(tmp_path, *SHORT, "engine.eval_every=0", "engine.final_eval=false", "method.log_hooks=true")
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["metrics"] == {} and summary["figures"] == [] and summary["global_step"] == 112
    assert read_records(str(tmp_path), "eval") == [] and os.listdir(tmp_path / "figures") == []
    assert ckpt.latest(str(tmp_path / "checkpoints")) is not None
    hooks = [json.loads(x) for x in open(tmp_path / "hooks.jsonl")]
    assert hooks[-1] == ["train_end", 112]          # the hook still runs: only the report is skipped
