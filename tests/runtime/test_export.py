import os
import subprocess
import sys

import pytest
import torch
from toy_runs import ENV, ROOT, SHORT, run_toy


@pytest.mark.parametrize("zero", [0, 3])
def test_export_writes_plain_state_dict_the_bare_model_loads(tmp_path, zero):
    run_toy(tmp_path, *SHORT, f"engine.zero_stage={zero}", "data.batch_size=16", nproc=2 if zero else 1)
    out = tmp_path / "model.pt"
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export_checkpoint.py"), str(tmp_path),
                    "--out", str(out), "--whole-method"], env=ENV, check=True, timeout=300)
    state = torch.load(out, weights_only=True)
    sys.path.insert(0, os.path.join(ROOT, "tests", "runtime"))
    import toy_recipe

    from dist_cluster.launch import build_method
    cfg = toy_recipe.config()
    bare = build_method(cfg)
    before = bare.head.weight.clone()
    bare.load_state_dict(state, strict=True)
    assert all(v.dtype == torch.float32 for v in state.values())
    assert not torch.equal(before, bare.head.weight)      # trained weights, not the initial ones
    # the exported model predicts as well as the run's own final evaluation
    acc = (bare.head(bare.body(bare.x)).argmax(1) == bare.y).float().mean().item()
    assert acc > 0.85


def test_export_of_a_method_defined_beside_its_recipe_needs_no_pythonpath(tmp_path):
    # the toy method lives in tests/runtime, outside the package, as a user's own method would (R8)
    run_toy(tmp_path / "run", *SHORT)
    assert open(tmp_path / "run" / "import_paths.txt").read().splitlines() == [os.path.join(ROOT, "tests", "runtime")]
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export_checkpoint.py"), str(tmp_path / "run"),
                          "--out", str(tmp_path / "model.pt")], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert "head.weight" in state and state["head.weight"].dtype == torch.float32
