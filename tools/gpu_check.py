"""The prepared GPU check: `python tools/gpu_check.py [--quick]` on a machine with one or more CUDA GPUs.

Prints one table and exits non-zero on any failure (2 with a one-line message when there is no CUDA device):
  - every recipe family (CgMCR², FEC, UNIC, PICI) with tiny overrides, on 1 process (NCCL group) and on 2
    processes sharing GPU 0 (`cpu:gloo,cuda:gloo`: NCCL refuses two ranks on one device), each checked for
    finite losses, a complete checkpoint and a resume;
  - FEC-S/B/L training images/s at batch 256 in bf16 and fp32 beside timm's resnet50 (paper, V100 fp32:
    1042.9 / 754.1 / 342.1 img/s);
  - CgMCR² ms per training iteration at batch 512 (paper: 22.9 ms on a 3080 Ti);
  - exact kNN of 1,000,000 × 768 fp16 unit vectors (time; lists equal to a float32 brute force on a sample);
  - the coding rate Rc with k = 1000 clusters, n = 4096, d = 128 (forward + backward ms).
Everything runs from data on disk (scikit-learn's digits, scikit-image's photos): nothing is downloaded.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests", "fec")]
ROWS: list[tuple[str, str, str, str]] = []   # check, result, reference, status


def row(check: str, result: str, reference: str = "", ok: bool = True) -> None:
    ROWS.append((check, result, reference, "ok" if ok else "FAIL"))
    print(f"  {check}: {result} {'' if ok else '(FAIL)'}", flush=True)


def attempt(name: str, fn) -> None:
    try:
        fn()
    except Exception as e:   # one failed check must not hide the others
        row(name, f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:150] if str(e).strip() else ''}", ok=False)


# ---- recipes on the real launchers ---------------------------------------------------------------------------
def _launch(nproc: int, recipe: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                                str(nproc), "--master_port", str(29600 + os.getpid() % 300)]
    return subprocess.run(cmd + [os.path.join(ROOT, "recipes", f"{recipe}.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _recipe_check(family: str, recipe: str, args: list[str], steps: tuple[int, int], nproc: int, work: str) -> None:
    from dist_cluster import checkpoint as ckpt
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if nproc > 1:
        env["DIST_CLUSTER_BACKEND"] = "cpu:gloo,cuda:gloo"
    run_dir = os.path.join(work, f"{family}_{nproc}")
    t0 = time.time()
    for i, n in enumerate(steps):
        res = _launch(nproc, recipe, args + [f"run_dir={run_dir}", f"engine.max_steps={n}", "engine.progress=false",
                                             "engine.log_every=1"], env)
        if res.returncode != 0:
            raise RuntimeError(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"rc {res.returncode}")
        if i == 1 and "resumed from" not in res.stdout:
            raise RuntimeError("second launch did not resume")
    losses = [r["loss"] for r in map(json.loads, open(os.path.join(run_dir, "metrics.jsonl"))) if r["kind"] == "train"]
    tag = ckpt.latest(os.path.join(run_dir, "checkpoints"))
    ok = bool(losses) and all(math.isfinite(v) for v in losses) and tag is not None
    row(f"{family}, {nproc} process{'es' if nproc > 1 else ''}",
        f"{len(losses)} steps, loss {losses[-1]:.4g}, {tag}, resumed, {time.time() - t0:.0f} s", "", ok)


def recipe_checks(work: str) -> None:
    from fec_tiny_data import tiny_overrides, write_image_folder
    data = os.path.join(work, "data")
    images = write_image_folder(os.path.join(work, "images"))
    families = {
        "CgMCR²": ("cgmcr2_digits", [f"data.root={data}", "method.baselines=[]", "data.batch_size=256"], (2, 4)),
        "FEC": ("fec_small", tiny_overrides(images, data, "unused") + ["method.num_classes=3", "method.epochs=2"],
                (2, 4)),
        "UNIC": ("unic_fmnist", ["data=digits_pixels", f"data.root={data}", "method.feature_norm=zscore",
                                 "method.tau2=400", "method.head_hidden=64", "method.epochs=2", "data.batch_size=32"],
                 (2, 4)),
        "PICI": ("pici_digits", [f"data.root={data}", "data.train_samples=480", "data.batch_size=48",
                                 "method.pretrain_epochs=1", "method.train_epochs=1", "method.boost_epochs=1",
                                 "engine.eval_every=0", "method.tsne_samples=0", "method.recon_images=4"], (5, 12)),
    }
    for family, (recipe, args, steps) in families.items():
        args = [a for a in args if not a.startswith("run_dir=")]
        for nproc in (1, 2):
            attempt(f"{family}, {nproc} process{'es' if nproc > 1 else ''}",
                    lambda: _recipe_check(family, recipe, args, steps, nproc, work))


# ---- throughput and kernels ----------------------------------------------------------------------------------
def _cuda_ms(fn, reps: int = 10, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def fec_throughput(quick: bool) -> None:
    import timm

    import dist_cluster.models  # noqa: F401  (registers fec_small/base/large with timm)
    paper = {"fec_small": "1042.9", "fec_base": "754.1", "fec_large": "342.1", "resnet50": ""}
    batch = 64 if quick else 256
    for name in ("fec_small", "fec_base", "fec_large", "resnet50"):
        for precision in ("bf16", "fp32"):
            def one():
                model = timm.create_model(name, num_classes=1000).cuda().to(memory_format=torch.channels_last)
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                x = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
                y = torch.randint(0, 1000, (batch,), device="cuda")

                def step():
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                        loss = torch.nn.functional.cross_entropy(model(x), y)
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                ms = _cuda_ms(step, reps=5 if quick else 10)
                row(f"{name} train {precision}, batch {batch}", f"{batch / ms * 1000:.1f} img/s",
                    f"{paper[name]} img/s (V100, paper)" if paper[name] and precision == "fp32" else "")
            attempt(f"{name} train {precision}", one)
            torch.cuda.empty_cache()


def cgmcr2_iteration() -> None:
    from dist_cluster.config import ExperimentConfig
    from dist_cluster.launch import build_method
    from dist_cluster.methods.base import total_loss
    from dist_cluster.methods.cgmcr2.config import CgMCR2Config
    cfg = ExperimentConfig(method=CgMCR2Config(in_dim=768, k=10))
    method = build_method(cfg).cuda().train()
    stage = method.stages()[-1]
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)
    batch = {"feature": torch.randn(512, 768, device="cuda"), "index": torch.arange(512, device="cuda"),
             "label": torch.zeros(512, dtype=torch.long, device="cuda")}

    def step():
        loss = total_loss(method(batch, stage), stage)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    row("CgMCR² iteration, batch 512", f"{_cuda_ms(step):.1f} ms", "22.9 ms (3080 Ti, paper)")


def knn_million(quick: bool) -> None:
    from dist_cluster.neighbors import knn
    n = 200_000 if quick else 1_000_000
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(n, 768, device="cuda", generator=g), dim=1).half()
    torch.cuda.synchronize()
    t0 = time.time()
    res = knn(x, 10, metric="cosine", self_first=False)
    torch.cuda.synchronize()
    seconds = time.time() - t0
    sample = torch.randperm(n, device="cuda", generator=g)[:1000]
    ref = (x[sample].float() @ x.float().T).topk(10, dim=1).indices
    same = (res.index[sample].sort(1).values == ref.sort(1).values).all(1).float().mean().item()
    row(f"exact kNN {n:,} × 768 fp16, k 10", f"{seconds:.1f} s, {same:.1%} of sampled lists = fp32 brute force",
        "faiss-gpu IndexFlatIP", same >= 0.99)


def coding_rate_k1000() -> None:
    from dist_cluster.objectives.coding_rate import cluster_coding_rate
    z = torch.nn.functional.normalize(torch.randn(4096, 128, device="cuda"), dim=1).requires_grad_()
    pi = torch.softmax(torch.randn(4096, 1000, device="cuda"), dim=1).requires_grad_()

    def fwd_bwd():
        cluster_coding_rate(z, pi, 0.5).backward()
    row("coding rate Rc, k 1000, n 4096, d 128", f"{_cuda_ms(fwd_bwd):.1f} ms forward + backward")


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible (torch.cuda.is_available() is False); run it on a GPU machine",
              file=sys.stderr)
        return 2
    quick = "--quick" in sys.argv
    print(f"gpu_check on {torch.cuda.get_device_name(0)} × {torch.cuda.device_count()}, torch {torch.__version__}",
          flush=True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    with tempfile.TemporaryDirectory() as work:
        recipe_checks(work)
    attempt("FEC throughput", lambda: fec_throughput(quick))
    attempt("CgMCR² iteration", cgmcr2_iteration)
    attempt("exact kNN", lambda: knn_million(quick))
    attempt("coding rate", coding_rate_k1000)
    width = max(len(r[0]) for r in ROWS)
    print(f"\n| {'check':<{width}} | result | reference | status |\n|{'-' * (width + 2)}|---|---|---|")
    for check, result, ref, status in ROWS:
        print(f"| {check:<{width}} | {result} | {ref} | {status} |")
    return 1 if any(r[3] != "ok" for r in ROWS) else 0


if __name__ == "__main__":
    sys.exit(main())
