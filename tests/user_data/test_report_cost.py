"""The report at any N: its estimate said first when over a minute, every step timed, rank 0 alone in a live
group, and `--method kmeans` as dist_cluster's own k-means."""
import numpy as np
import pytest
from dist_utils import run_world
from sklearn.datasets import make_blobs

from dist_cluster.cluster.clock import ReportClock
from dist_cluster.cluster.table import announce


def test_estimate_is_said_before_a_report_over_a_minute(capsys):
    seconds = announce(ReportClock(), 1_281_167, 768, 1000, ("kmeans", "spectral"), hint="--baselines none")
    out = capsys.readouterr().out
    assert seconds > 60 and out.startswith("[report] estimated ") and "min before the table" in out
    assert "Spectral on a 50,000-row sample" in out and "silhouette on a seeded 10,000-row sample" in out  # 50·k
    assert out.rstrip().endswith("--baselines none")
    assert announce(ReportClock(), 1797, 64, 10, ("kmeans", "spectral")) < 60
    assert capsys.readouterr().out == ""          # a short report says nothing in advance


def test_every_step_is_printed_with_its_time(capsys):
    clock = ReportClock()
    with clock.step("KMeans"):
        pass
    record = clock.record()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[report] KMeans: ") and out[0].endswith(" s") and out[1].startswith("[report] total: ")
    assert [s["step"] for s in record["steps"]] == ["KMeans"] and record["total_s"] >= 0


def _separated(n=240, k=4):
    x, y = make_blobs(n_samples=n, centers=k, n_features=5, cluster_std=0.3, random_state=3)
    return x.astype(np.float32), y


def _rank0_reports_alone(rank, world):
    """Rank 0 computes dist_cluster baselines while rank 1 waits in a collective of the live group."""
    import torch.distributed as dist

    from dist_cluster.cluster.baselines import our_kmeans, our_spectral
    from dist_cluster.eval import cluster_metrics
    out = None
    if rank == 0:
        x, y = _separated()
        km, sc = our_kmeans(x, 4).labels.numpy(), our_spectral(x, 4)
        out = (cluster_metrics(y, km)["acc"], cluster_metrics(y, sc)["acc"])
    dist.barrier()
    return out


def test_rank0_report_does_not_wait_for_the_other_ranks():
    assert run_world(_rank0_reports_alone, 2)[0] == (1.0, 1.0)


def test_kmeans_method_is_dist_clusters_kmeans_with_the_clis_seed(tmp_path):
    from dist_cluster.cluster.kmeans_run import kmeans_method
    from dist_cluster.eval import cluster_metrics
    x, y = _separated()
    run = kmeans_method(x, 4, seed=5, run_dir=str(tmp_path))
    pred = np.load(tmp_path / "predictions.npz")
    assert cluster_metrics(y, pred["cluster"])["acc"] == 1.0 and run.seed == 5 and run.wall_s > 0
    assert pred["embedding"].shape == (len(x), 4) and ((0 <= pred["confidence"]) & (pred["confidence"] <= 1)).all()
    assert run.loss == pytest.approx(float((pred["embedding"].min(1).astype(np.float64) ** 2).sum()), rel=1e-4)
