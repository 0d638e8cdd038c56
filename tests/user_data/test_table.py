"""The result table's rows: input forms, NMI normalisation, the 'beaten by' mark, label-free figures."""
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score

from dist_cluster.cluster.table import baseline_rows, format_table, mark_beaten, score_row, title_line


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=300, centers=4, n_features=6, cluster_std=2.5, random_state=0)
    return (x * np.arange(1, 7)).astype(np.float32), y      # uneven scales: the two forms differ


def test_baselines_in_both_forms_with_sklearn_numbers(blobs):
    x, y = blobs
    rows = baseline_rows(x, y, 4, seed=0)
    assert list(rows) == ["kmeans", "kmeans_l2", "spectral", "spectral_l2"]
    assert [r["input"] for r in rows.values()] == ["as given", "L2-normalised"] * 2
    km = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(x)     # the same peer, run here
    assert rows["kmeans"]["nmi"] == pytest.approx(normalized_mutual_info_score(y, km))
    geo = baseline_rows(x, y, 4, seed=0, nmi_average="geometric", baselines=("kmeans",))
    assert geo["kmeans"]["nmi"] == pytest.approx(normalized_mutual_info_score(y, km, average_method="geometric"))
    assert geo["kmeans"]["nmi"] != pytest.approx(rows["kmeans"]["nmi"], abs=1e-9)


def test_method_row_marked_when_a_baseline_beats_it(blobs):
    x, y = blobs
    rows = {"mine": score_row(np.arange(len(x)) % 4, x, y, "arithmetic", input="learned")}   # a poor partition
    rows |= baseline_rows(x, y, 4, seed=0)
    mark_beaten(rows, ("mine",))
    assert set(rows["mine"]["beaten_by"]) == {"kmeans", "kmeans_l2", "spectral", "spectral_l2"}
    text = format_table(rows, title_line("Mine", "my_feats", len(x), 4, True, "evaluated on the training data",
                                         "arithmetic"))
    assert "'my_feats'" in text and "NMI arithmetic (scikit-learn default)" in text
    assert "beaten by KMeans (as given)" in text and "L2-normalised" in text


def test_unlabelled_rows_have_label_free_figures_only(blobs):
    x, _ = blobs
    rows = baseline_rows(x, None, 4, seed=0)
    for r in rows.values():
        assert "acc" not in r and "nmi" not in r and r["clusters_used"] == 4 and -1 <= r["silhouette"] <= 1
    mark_beaten(rows, ())
    assert "no labels: ACC/NMI/ARI not computed" in title_line("M", "d", len(x), 4, False, "s", "arithmetic")
