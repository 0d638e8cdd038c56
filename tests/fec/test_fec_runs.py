"""The FEC recipes under the real launchers: DeepSpeed bf16, 2 processes == 1 process, segments from checkpoints."""
import json
import os
import subprocess
import sys

import pytest
import torch
from fec_tiny_data import tiny_overrides, write_image_folder
from inprocess import run_recipe_in_process

from dist_cluster import checkpoint as ckpt
from dist_cluster.distributed.spawn import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
pytestmark = pytest.mark.slow
# One block per stage: nothing here depends on the depth, and FEC-Small's 14 blocks (Inductor's compile of
# them most of all) were most of these tests' time.
SHALLOW = "method.depths=[1,1,1,1]"


def launch(nproc: int, recipe: str, overrides: list[str]) -> subprocess.CompletedProcess:
    launcher = [sys.executable] if nproc == 1 else [
        os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", str(nproc),
        "--master_port", str(free_port())]
    res = subprocess.run(launcher + [os.path.join(ROOT, "recipes", f"{recipe}.py"), *overrides], env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def records(run_dir, kind):
    return [r for r in map(json.loads, open(os.path.join(run_dir, "metrics.jsonl"))) if r["kind"] == kind]


def module_states(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    return torch.load(os.path.join(d, ckpt.latest(d), "mp_rank_00_model_states.pt"), weights_only=False)["module"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imagenet_substitute"))


def test_bf16_zero2_deepspeed_run_then_segments_from_its_checkpoint_and_export(images, tmp_path):
    from dist_cluster.interpret import inspect_image, load_fec
    run_dir = tmp_path / "run"
    launch(1, "fec_small", tiny_overrides(images, str(tmp_path / "data"), str(run_dir)) + [
        SHALLOW, "engine.precision=bf16", "engine.zero_stage=2", "method.num_classes=3", "method.epochs=1",
        "engine.max_steps=3", "method.figure_photos=[astronaut]", "method.figure_size=64"])
    train = records(run_dir, "train")
    assert len(train) == 3 and all(0 < r["loss"] < 10 and r["min_alpha"] > 0 for r in train)
    summary = json.load(open(run_dir / "summary.json"))
    assert summary["global_step"] == 3 and summary["metrics"]["eval_samples"] == 12
    assert 0 <= summary["metrics"]["top1"] <= 1 and summary["metrics"]["top3"] == 1.0
    assert os.path.getsize(run_dir / "figures" / "segments_astronaut.png") > 10_000
    states = module_states(run_dir)
    assert states["model.head.weight"].dtype == torch.bfloat16          # DeepSpeed trained in bf16
    # segments from the run directory (export path), its EMA weights, and an exported file
    export = tmp_path / "fec.pt"
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export_checkpoint.py"), str(run_dir), "--out",
                    str(export)], env=ENV, check=True, timeout=300, capture_output=True)
    from_run, from_ema, from_file = load_fec(str(run_dir)), load_fec(str(run_dir), ema=True), load_fec(str(export))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(from_run(x), from_file(x))
        assert not torch.equal(from_run(x), from_ema(x))
    # the export holds ZeRO's fp32 master weights; the module states DeepSpeed keeps are their bf16 copies
    torch.testing.assert_close(from_file.head.weight.detach().bfloat16(), states["model.head.weight"])
    _, pyramid, logits = inspect_image(from_file, torch.zeros(96, 96, 3, dtype=torch.uint8).numpy() + 128, 64, k=2)
    assert logits.shape == (3,) and int(pyramid.merged.max()) + 1 <= 2


def test_two_processes_train_like_one(images, tmp_path):
    # Same global batch (4 = 1 × 4 = 2 × 2); per-sample augmentation is seeded by sample index, so only
    # Mixup (one draw per rank) and drop path (per-rank noise) would differ: both off here.
    common = [SHALLOW, "method.num_classes=3", "method.epochs=1", "method.mixup=0", "method.cutmix=0",
              "method.drop_path=0", "engine.precision=fp32", "sched.warmup_epochs=0", "optim.lr=0.002"]
    one, two = tmp_path / "w1", tmp_path / "w2"
    launch(1, "fec_small", tiny_overrides(images, str(tmp_path / "data"), str(one), batch=4) + common)
    launch(2, "fec_small", tiny_overrides(images, str(tmp_path / "data"), str(two), batch=2) + common)
    a, b = records(one, "train"), records(two, "train")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 1e-4
    assert abs(a[0]["loss"] - a[-1]["loss"]) > 1e-3                            # it trained
    wa, wb = module_states(one), module_states(two)
    assert wa.keys() == wb.keys()
    # Another summation order can flip one pixel's cluster (an argmax at a tie), which moves that block's
    # weights by up to one Adam step (lr) per step: a handful of entries, never more than 6 × lr; the rest
    # agree to 1e-4.
    diffs = {k: (wa[k].float() - wb[k].float()).abs() for k in wa}
    assert max(float(d.max()) for d in diffs.values()) < 6 * 0.002
    assert sum(int((d > 1e-4).sum()) for d in diffs.values()) <= 1e-5 * sum(d.numel() for d in diffs.values())
    ea, eb = records(one, "eval")[-1], records(two, "eval")[-1]
    assert (ea["top1"], ea["ema_top1"]) == (eb["top1"], eb["ema_top1"])


def test_compiled_run_trains_like_eager(images, tmp_path):
    # engine.compile=true: DeepSpeed compiles the method (Mixup stays eager), traced forward and backward by
    # AOTAutograd; aot_eager skips Inductor's kernel generation (minutes on 2 cores, cold), whose kernels are
    # checked against eager on a block and a pool in test_fec_compile.py. In-process, to count the graphs.
    from torch._dynamo.utils import counters
    common = [SHALLOW, "method.num_classes=3", "method.epochs=1", "engine.max_steps=2", "method.ema=false",
              "engine.final_eval=false"]
    runs = {name: tmp_path / name for name in ("eager", "compiled")}
    counters.clear()
    for name, run_dir in runs.items():
        res = run_recipe_in_process("fec_small", tiny_overrides(images, str(tmp_path / "data"), str(run_dir),
                                                                image_size=32) + common
                                    + (["engine.compile=true", "engine.compile_backend=aot_eager"]
                                       if name == "compiled" else []), cwd=ROOT)
        assert res.returncode == 0, res.stderr[-3000:]
    assert counters["stats"]["unique_graphs"] >= 1, dict(counters["stats"])
    a, b = records(runs["eager"], "train"), records(runs["compiled"], "train")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2]
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 1e-4
    wa, wb = module_states(runs["eager"]), module_states(runs["compiled"])
    assert wa.keys() == wb.keys()
    assert max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa) < 1e-4
