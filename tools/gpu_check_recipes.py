"""Recipe rows of tools/gpu_check.py: each family on the real launchers with tiny overrides, then a resume.

`python tools/gpu_check_recipes.py WORK` writes the tiny data once (run before the checks, which share it).
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

from gpu_check_rows import Row, launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNCS = "diag/host_syncs_per_step"


@dataclass
class Spec:
    name: str
    recipe: str
    args: list[str]
    steps: tuple[int, int]          # engine.max_steps of the first launch, then of the resumed one
    nproc: int = 1
    launcher: str = "python"        # python | torchrun | deepspeed
    limit: float = 150.0            # seconds for both launches
    expect: str = "ok"              # what the row should say (the dry run's probes expect FAIL / skipped)
    syncs_row: str = ""             # family name: also report its host syncs per step


def family_args(work: str) -> dict[str, tuple[str, list[str], tuple[int, int]]]:
    data, images = os.path.join(work, "data"), os.path.join(work, "images")
    fec = [f"data.source={images}", f"data.root={data}", "data.image_size=64", "data.batch_size=4",
           "data.eval_batch_size=8", "data.num_workers=0", "method.figure_photos=[]", "method.num_classes=3",
           "method.epochs=2"]
    return {
        "cgmcr2": ("cgmcr2_digits", [f"data.root={data}", "method.baselines=[]", "data.batch_size=256"], (2, 4)),
        "fec_small": ("fec_small", fec, (2, 4)),
        "fec_large": ("fec_large", fec, (2, 4)),
        "unic": ("unic_fmnist", ["data=digits_pixels", f"data.root={data}", "method.feature_norm=zscore",
                                 "method.tau2=400", "method.head_hidden=64", "method.epochs=2", "data.batch_size=32"],
                 (2, 4)),
        "pici": ("pici_digits", [f"data.root={data}", "data.train_samples=480", "data.batch_size=48",
                                 "method.pretrain_epochs=1", "method.train_epochs=1", "method.boost_epochs=1",
                                 "engine.eval_every=0", "method.tsne_samples=0", "method.recon_images=4"], (5, 12)),
    }


def specs(work: str, dry: bool) -> list[Spec]:
    """The checks, longest first (the pool starts them in this order)."""
    fam = family_args(work)
    if dry:     # one real check, and two probes of the harness: a failing launch, a launch past its limit
        recipe, args, steps = fam["cgmcr2"]
        return [Spec("cgmcr2, 1 process", recipe, args, steps, syncs_row="cgmcr2"),
                Spec("probe: a failing launch", recipe, args + ["engine.max_steps=two"], steps, 2, "torchrun",
                     expect="FAIL"),
                Spec("probe: a launch past its 4 s limit", recipe, args, steps, 2, "torchrun", limit=4,
                     expect="skipped")]
    out = [Spec("fec_large, deepspeed launcher, 1 GPU", *fam["fec_large"], launcher="deepspeed")]
    out += [Spec(f"{f}, 2 processes on GPU 0", *fam[f], nproc=2, launcher="torchrun")
            for f in ("fec_small", "pici", "unic", "cgmcr2")]
    out += [Spec(f"{f}, 1 process", *fam[f], syncs_row=f.split("_")[0]) for f in ("fec_small", "pici", "unic",
                                                                                   "cgmcr2")]
    return out


def command(spec: Spec, run_dir: str, steps: int, extra: list[str]) -> list[str]:
    from dist_cluster.distributed.spawn import free_port
    recipe = os.path.join(ROOT, "recipes", f"{spec.recipe}.py")
    if spec.launcher == "deepspeed":
        ds = os.path.join(os.path.dirname(sys.executable), "deepspeed")
        head = [ds] if os.path.exists(ds) else [sys.executable, "-m", "deepspeed.launcher.runner"]
        head += ["--num_gpus", str(spec.nproc), "--master_port", str(free_port())]
    elif spec.launcher == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(spec.nproc),
                "--master_port", str(free_port())]
    else:
        head = [sys.executable]
    # log_every=2: the engine counts host syncs in steps that do not log
    return head + [recipe, *spec.args, f"run_dir={run_dir}", f"engine.max_steps={steps}", "engine.progress=false",
                   "engine.log_every=2", "engine.final_eval=false", *extra]


def run_check(spec: Spec, work: str, env: dict, deadline: float, report, count_syncs: bool) -> None:
    """Both launches of one check (the second must resume), then its row and its host-syncs row."""
    from dist_cluster import checkpoint as ckpt
    from dist_cluster.logging import read_records
    t0, slug = time.monotonic(), "".join(c if c.isalnum() else "_" for c in spec.name)
    run_dir, times = os.path.join(work, "runs", slug), []
    deadline = min(deadline, t0 + spec.limit)
    row = Row("recipe", spec.name, status="FAIL", expected=spec.expect)
    row.check += f" (expected {spec.expect})" if spec.expect != "ok" else ""
    for i, steps in enumerate(spec.steps):
        if time.monotonic() >= deadline:
            row.status, row.error = "skipped", f"budget spent before launch {i + 1}"
            break
        res = launch(command(spec, run_dir, steps, ["engine.count_syncs=true"] if count_syncs else []), env, ROOT,
                     deadline, os.path.join(work, f"{slug}.{i}"))
        times.append(res.seconds)
        if res.rc is None:
            row.status, row.error = "skipped", f"killed at its deadline (launch {i + 1}, {res.seconds:.0f} s)"
            break
        if res.rc != 0:
            row.error = res.error
            break
        if i == 1 and "resumed from" not in res.stdout:
            row.error = "the second launch did not print 'resumed from'"
            break
    else:
        recs = read_records(run_dir, "train")
        tag = ckpt.latest(os.path.join(run_dir, "checkpoints"))
        ok = bool(recs) and recs[-1]["step"] == spec.steps[1] and all(math.isfinite(r["loss"]) for r in recs)
        row.status = "ok" if ok and tag is not None else "FAIL"
        row.result = (f"{recs[-1]['step']} steps, loss {recs[-1]['loss']:.4g}, {tag}, resumed at step "
                      f"{spec.steps[0]}; launches {' + '.join(f'{t:.0f}' for t in times)} s" if recs
                      else "no train records")
    row.seconds = round(time.monotonic() - t0, 1)
    report.add(row)
    if spec.syncs_row:
        report.add(syncs_row(spec.syncs_row, run_dir, row, count_syncs))


def syncs_row(family: str, run_dir: str, check: Row, count_syncs: bool) -> Row:
    from dist_cluster.logging import read_records
    row = Row("syncs", f"{family}: host syncs per step, 1 process", status="FAIL")
    vals = [r[SYNCS] for r in read_records(run_dir, "train") if SYNCS in r]
    if not count_syncs:
        row.status, row.error = "n/a", "engine.count_syncs is not in this version's EngineConfig"
    elif vals:   # each logged value is the most seen in one step so far
        row.status, row.result = "ok", f"{max(vals):g} at most in one step (steps that do not log)"
    elif check.status != "ok":
        row.status, row.error = ("skipped" if check.status == "skipped" else "FAIL"), "its recipe check did not finish"
    else:
        row.error = f"no {SYNCS} in metrics.jsonl"
    return row


def prepare(work: str) -> None:
    """Write the tiny image folder and every family's shards once, before the checks share them."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "fec"))
    from fec_tiny_data import write_image_folder

    from dist_cluster.data import prepare as prepare_data
    from dist_cluster.launch import build_config, load_recipe
    write_image_folder(os.path.join(work, "images"))
    done = set()
    for recipe, args, _ in family_args(work).values():
        cfg = build_config(load_recipe(os.path.join(ROOT, "recipes", f"{recipe}.py")), args)
        key = (cfg.data.name, cfg.data.root, cfg.data.source)
        if key not in done:
            prepare_data(cfg.data)
            done.add(key)
    print(", ".join(sorted(k[0] for k in done)))


if __name__ == "__main__":
    prepare(sys.argv[1])
