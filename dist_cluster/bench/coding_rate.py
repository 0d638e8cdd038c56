"""Forward + backward of the coding-rate loss −R(Z) + Rc(Z, Π) against the reference code's per-cluster loop.

Ours: batched Cholesky with clusters chunked (dist_cluster.objectives.coding_rate); peer: one torch.logdet
per cluster. With 2 processes the k clusters' rows are sharded over gloo ranks (the slowest rank's time,
against ours on 1 process). Exactness: the two losses agree to 1e-4 relative (float32).

Also one CgMCR² training iteration on the engine path (Trainer._train_step: engine forward, the non-finite
guard, backward, DeepSpeed/Adam step) at Table A.3's CIFAR-10 row (global batch 512, 768-d CLIP input, hidden
4096, d 128, k 10), beside the method's forward + backward alone: the difference is the engine and optimizer.
The GPU target is ≤ 5 ms per iteration.
"""
from __future__ import annotations

import math
import time

import torch

from dist_cluster.bench.registry import Options, Row
from dist_cluster.bench.timer import paired
from dist_cluster.distributed import barrier


def inputs(n: int, d: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1).requires_grad_(True)
    pi = torch.softmax(torch.randn(n, k, generator=g), dim=1).requires_grad_(True)
    return z, pi


def reference_loop(z, pi, eps):
    n, d = z.shape
    eye = torch.eye(d)
    r = 0.5 * torch.logdet(eye + d / (n * eps * eps) * z.T @ z)
    rc = 0.0
    for j in range(pi.shape[1]):
        t = pi[:, j].sum() + 1e-8
        rc = rc + t / (2 * n) * torch.logdet(eye + d / (t * eps * eps) * (z.T * pi[:, j]) @ z)
    return rc - r


def ours(z, pi, eps):
    from dist_cluster.objectives.coding_rate import cluster_coding_rate, coding_rate
    return cluster_coding_rate(z, pi, eps) - coding_rate(z, eps)


def _step(fn, z, pi):
    z.grad = pi.grad = None
    loss = fn(z, pi, 0.5)
    loss.backward()
    return float(loss.detach())


def _on_rank(rank, world, n, d, k, repeats):
    z_all, pi_all = inputs(n, d, k)
    rows = slice(rank * n // world, (rank + 1) * n // world)
    z, pi = z_all.detach()[rows].clone().requires_grad_(True), pi_all.detach()[rows].clone().requires_grad_(True)
    times = []
    for _ in range(repeats):
        barrier()
        t = time.perf_counter()
        _step(ours, z, pi)
        times.append(time.perf_counter() - t)
    return times


def _iteration_on_rank(rank, world, n, d_in, hidden, d, steps):
    """(median seconds of an engine-path iteration, of the method's forward + backward alone, last loss)."""
    import statistics
    import tempfile

    from dist_cluster.config import ExperimentConfig
    from dist_cluster.distributed import resolve
    from dist_cluster.distributed.process_group import init_distributed
    from dist_cluster.engine.context import RunContext
    from dist_cluster.engine.trainer import Trainer
    from dist_cluster.methods.base import total_loss
    from dist_cluster.methods.cgmcr2 import CgMCR2, CgMCR2Config
    m = CgMCR2Config(in_dim=d_in, hidden=hidden, feature_dim=d, k=10, eps=0.5, gamma=70.0, s=10, global_batch=n)
    cfg = ExperimentConfig(name="bench_cgmcr2_iteration", method=m, seed=0)
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "adam", 1e-4, 5e-4
    env = resolve()
    device = init_distributed(env)
    torch.manual_seed(0)
    method = CgMCR2(cfg)
    ctx = RunContext(cfg=cfg, env=env, run_dir=tempfile.mkdtemp(), device=device)
    trainer = Trainer(cfg, method, ctx)
    trainer.batch_size, trainer.micro = n, 0
    trainer._init_engine(False)
    stage = ctx.stage = method.stages()[-1]          # fine-tune: −R + Rc + Ncut, all with gradient
    method.train()
    batch = {"feature": torch.nn.functional.normalize(torch.randn(n, d_in), dim=1).to(device)}
    out = {}

    def engine_step():
        out["loss"] = trainer._train_step(dict(batch), stage, "bench", True, False)[1]["loss"]

    def method_step():
        total_loss(method(dict(batch), stage), stage).backward()
        method.zero_grad(set_to_none=True)

    def median_seconds(fn):
        for _ in range(2):
            fn()
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    return median_seconds(engine_step), median_seconds(method_step), out["loss"]


def iteration_row(opts: Options) -> Row:
    from dist_cluster.distributed.spawn import run_world
    n, d_in, hidden, d, steps = (64, 32, 64, 16, 3) if opts.quick else (512, 768, 4096, 128, 10)
    engine_s, method_s, loss = run_world(_iteration_on_rank, 1, n, d_in, hidden, d, steps,
                                         threads=opts.threads)[0]
    return Row("coding_rate", f"CgMCR² training iteration, engine path, batch {n}, {d_in}→{hidden}→{d}, k=10",
               f"1×{opts.threads}", engine_s, "method fwd+bwd alone", method_s, exact=math.isfinite(loss),
               note="GPU target ≤ 5 ms")


def run(opts: Options) -> list[Row]:
    import statistics

    from dist_cluster.distributed.spawn import run_world
    torch.set_num_threads(opts.threads)
    grid = [(256, 32, 10)] if opts.quick else [(n, 128, k) for n in (512, 2048) for k in (10, 100, 1000)]
    rows = []
    for n, d, k in grid:
        z, pi = inputs(n, d, k)
        med, last = paired({"ours": lambda: _step(ours, z, pi), "loop": lambda: _step(reference_loop, z, pi)},
                           opts.repeats, pause=opts.pause)
        exact = abs(last["ours"] - last["loop"]) <= 1e-4 * max(1.0, abs(last["loop"]))
        what = f"coding-rate loss fwd+bwd, n={n} d={d} k={k}"
        rows.append(Row("coding_rate", what, f"1×{opts.threads}", med["ours"], "per-cluster logdet loop",
                        med["loop"], "" if opts.quick else "≤1.0", exact, f"loss {last['ours']:.5g}"))
        for world in [w for w in opts.procs if w > 1]:
            per_rank = run_world(_on_rank, world, n, d, k, opts.repeats, threads=max(1, opts.threads // world))
            t = statistics.median(max(ts) for ts in zip(*per_rank))
            rows.append(Row("coding_rate", what, f"{world}×{max(1, opts.threads // world)}", t,
                            f"ours 1×{opts.threads}", med["ours"], note="rows sharded over gloo ranks"))
    rows.append(iteration_row(opts))
    return rows
