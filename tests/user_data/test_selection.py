"""--n-init's seed selection rules on synthetic partitions (no training), and the CLI's --select option."""
import numpy as np
import pytest

from dist_cluster.cluster.run import SeedRun
from dist_cluster.cluster.selection import (
    DEFAULT_RULE,
    RULES,
    consensus_scores,
    pick,
    rule_scores,
    select,
    selection_report,
    silhouette_scores,
)

TRUTH = np.repeat(np.arange(4), 50)


def noisy(frac: float, seed: int) -> np.ndarray:
    """TRUTH with a fraction of the labels replaced at random, then renamed (names carry no meaning)."""
    rng = np.random.default_rng(seed)
    p = TRUTH.copy()
    flip = rng.random(len(p)) < frac
    p[flip] = rng.integers(0, 4, flip.sum())
    return rng.permutation(4)[p]


def blobs(spread: float) -> np.ndarray:
    centres = np.eye(4, 8) * 10
    return centres[TRUTH] + np.random.default_rng(0).normal(scale=spread, size=(len(TRUTH), 8))


def seed_runs(tmp_path, partitions, embeddings, losses, accs=None):
    runs = []
    for s, (p, e, loss) in enumerate(zip(partitions, embeddings, losses)):
        d = tmp_path / f"seed_{s}"
        d.mkdir()
        np.savez(d / "predictions.npz", index=np.arange(len(p)), cluster=p, confidence=np.ones(len(p)), embedding=e)
        runs.append(SeedRun(s, str(d), loss, {"acc": accs[s]} if accs else {}))
    return runs


def test_consensus_keeps_the_partition_the_others_agree_with():
    # three near-truth seeds and two that each went their own way: a near-truth one is kept
    parts = [noisy(0.9, 1), noisy(0.1, 2), noisy(0.05, 3), noisy(0.9, 4), noisy(0.1, 5)]
    scores = consensus_scores(parts)
    assert pick(scores, [0.0] * 5) == 2
    assert max(scores[0], scores[3]) < min(scores[1], scores[2], scores[4])
    assert consensus_scores([TRUTH]) == [1.0]


def test_consensus_ignores_cluster_names_and_two_seeds_tie_to_the_lower_loss():
    a, b = noisy(0.2, 7), noisy(0.9, 8)
    renamed = consensus_scores([a, (a + 1) % 4, b])
    assert renamed[0] == pytest.approx(renamed[1]) and renamed[0] > renamed[2]
    two = consensus_scores([a, noisy(0.5, 9)])
    assert two[0] == two[1] and pick(two, [3.0, 1.0]) == 1 and pick(two, [None, None]) == 0


def test_silhouette_prefers_the_partition_that_matches_the_embedding():
    x = blobs(1.0)
    scores = silhouette_scores([x, x, x], [noisy(0.0, 1), noisy(0.6, 2), np.zeros(len(x), dtype=int)])
    assert scores[0] > scores[1] and scores[2] is None and pick(scores, [0, 0, 0]) == 0


def test_loss_rule_keeps_the_lowest_finite_loss_and_unscored_seeds_are_skipped():
    runs = [SeedRun(0, "", 2.0), SeedRun(1, "", None), SeedRun(2, "", -1.0), SeedRun(3, "", float("nan"))]
    assert rule_scores(runs, "loss") == [-2.0, None, 1.0, None] and select(runs, "loss").seed == 2
    with pytest.raises(ValueError, match="unknown seed selection rule 'best'"):
        rule_scores(runs, "best")


def test_each_rule_reads_the_seed_run_directories(tmp_path):
    x = blobs(1.0)
    parts = [noisy(0.9, 1), noisy(0.05, 2), noisy(0.1, 3), noisy(0.1, 4)]
    runs = seed_runs(tmp_path, parts, [x] * 4, [-5.0, -1.0, -2.0, -3.0], accs=[0.3, 0.95, 0.9, 0.9])
    assert select(runs, "loss").seed == 0 and select(runs, "consensus").seed == 1
    assert select(runs, "silhouette").seed == 1
    rep = selection_report(runs, select(runs, "consensus"), "consensus")
    assert rep["rule"] == "consensus" and rep["criterion"] == RULES["consensus"] and rep["selected_seed"] == 1
    assert rep["by_rule"] == {"consensus": 1, "silhouette": 1, "loss": 0} and len(rep["scores"]) == 4
    assert rep["selected_beats_mean"] and rep["selected_beats_median"]
    lossy = selection_report(runs, select(runs, "loss"), "loss")
    assert not lossy["selected_beats_mean"] and not lossy["selected_beats_median"]


def test_a_seed_without_predictions_is_not_scored(tmp_path):
    x = blobs(1.0)
    runs = seed_runs(tmp_path, [noisy(0.1, 1), noisy(0.1, 2)], [x, x], [0.0, 0.0])
    runs.append(SeedRun(2, str(tmp_path / "missing"), -9.0))
    assert rule_scores(runs, "consensus")[2] is None and select(runs, "consensus").seed in (0, 1)
    assert select(runs[:1]).seed == 0


def test_cli_select_option(tmp_path):
    from dist_cluster.cluster.__main__ import main, parse
    assert parse(["x.npy", "--k", "3"]).select == DEFAULT_RULE
    assert parse(["x.npy", "--k", "3", "--select", "loss", "--n-init", "3"]).select == "loss"
    with pytest.raises(SystemExit) as e:
        main(["x.npy", "--k", "3", "--select", "lowest"])
    assert e.value.code == 2
