"""The result table's rows: input forms, NMI normalisation, the 'beaten by' mark, label-free figures, row names."""
import json

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score

from dist_cluster.cluster.table import (
    NOTE,
    baseline_rows,
    clustered_name,
    format_table,
    mark_beaten,
    score_row,
    title_line,
)


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=300, centers=4, n_features=6, cluster_std=2.5, random_state=0)
    return (x * np.arange(1, 7)).astype(np.float32), y      # uneven scales: the two forms differ


def test_baselines_in_both_forms_with_sklearn_numbers(blobs):
    x, y = blobs
    rows = baseline_rows(x, y, 4)
    assert list(rows) == ["kmeans", "kmeans_l2", "spectral", "spectral_l2"]
    assert [r["input"] for r in rows.values()] == ["as given", "L2-normalised"] * 2
    assert [r["name"] for r in rows.values()] == ["KMeans (scikit-learn)"] * 2 + \
        ["SpectralClustering (scikit-learn)"] * 2
    assert all(r["clustered"] == "input features" and r["rows"] == 300 for r in rows.values())
    km = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(x)     # the same peer, run here
    assert rows["kmeans"]["nmi"] == pytest.approx(normalized_mutual_info_score(y, km))
    geo = baseline_rows(x, y, 4, nmi_average="geometric", baselines=("kmeans",))
    assert list(geo) == ["kmeans", "kmeans_l2"]
    assert geo["kmeans"]["nmi"] == pytest.approx(normalized_mutual_info_score(y, km, average_method="geometric"))
    assert geo["kmeans"]["nmi"] != pytest.approx(rows["kmeans"]["nmi"], abs=1e-9)
    assert baseline_rows(x, y, 4, baselines=()) == {}


def test_above_the_cutoff_the_baselines_are_dist_clusters_and_spectral_runs_on_a_stated_sample(blobs, monkeypatch):
    import dist_cluster.cluster.baselines as b
    monkeypatch.setattr(b, "SKLEARN_MAX_ROWS", 100)
    monkeypatch.setattr(b, "SPECTRAL_ROWS", 200)
    x, _ = make_blobs(n_samples=300, centers=4, n_features=6, cluster_std=0.5, random_state=1)
    y = make_blobs(n_samples=300, centers=4, n_features=6, cluster_std=0.5, random_state=1)[1]
    rows = baseline_rows(x.astype(np.float32), y, 4)
    assert [r["name"] for r in rows.values()] == ["KMeans (dist_cluster)"] * 2 + \
        ["Spectral (dist_cluster kNN+Lanczos)"] * 2
    assert [r["rows"] for r in rows.values()] == [300, 300, 200, 200]
    assert all(r["acc"] == 1.0 and r["silhouette"] > 0.5 for r in rows.values())    # well separated: all exact
    again = baseline_rows(x.astype(np.float32), y, 4)
    assert [r["silhouette"] for r in again.values()] == [r["silhouette"] for r in rows.values()]   # seeded sample


def test_silhouette_is_scikit_learns_on_all_rows_and_a_seeded_sample_above(blobs, monkeypatch):
    from sklearn.metrics import silhouette_score

    import dist_cluster.cluster.table as table
    x, y = blobs
    assert score_row(y, x, None, "arithmetic")["silhouette"] == pytest.approx(silhouette_score(x, y), abs=1e-6)
    monkeypatch.setattr(table, "SAMPLE", 100)
    s = score_row(y, x, None, "arithmetic")["silhouette"]
    rows = table.sample_rows(len(x), 100)
    assert s == pytest.approx(silhouette_score(x[rows], y[rows]), abs=1e-6)
    assert "silhouette on a seeded 100-row sample" in title_line("M", "d", len(x), 4, False, "s", "arithmetic")


def test_method_row_marked_when_a_baseline_beats_it(blobs):
    x, y = blobs
    rows = {"mine": score_row(np.arange(len(x)) % 4, x, y, "arithmetic", name="Mine", input="learned")}
    rows |= baseline_rows(x, y, 4)
    mark_beaten(rows, ("mine",))
    assert set(rows["mine"]["beaten_by"]) == {"kmeans", "kmeans_l2", "spectral", "spectral_l2"}
    text = format_table(rows, title_line("Mine", "my_feats", len(x), 4, True, "training data", "arithmetic"))
    assert "Mine on 'my_feats': N=300, k=4, world size 1, training data" in text
    assert "NMI arithmetic (scikit-learn default)" in text and text.endswith(NOTE)
    assert "beaten by KMeans (as given)" in text and "L2-normalised" in text and "pre-features" not in text


def test_unlabelled_rows_have_label_free_figures_only(blobs):
    x, _ = blobs
    rows = baseline_rows(x, None, 4)
    for r in rows.values():
        assert "acc" not in r and "nmi" not in r and r["clusters_used"] == 4 and -1 <= r["silhouette"] <= 1
    mark_beaten(rows, ())
    assert "no labels: ACC/NMI/ARI not computed" in title_line("M", "d", len(x), 4, False, "s", "arithmetic")


@pytest.mark.parametrize("kind, source, expected", [
    ("feature", {"name": "X", "file": "/data/X.npy"}, "input features"),
    ("feature", {"name": "features", "backbone": "efficientnet_lite0"}, "EfficientNet-Lite0 features"),
    ("feature", {"name": "features", "backbone": "open_clip:ViT-L-14@/w.pt"}, "ViT-L-14 features"),
    ("feature", {"name": "digits_pixels"}, "pixels"),
    ("image", {"name": "images"}, "pixels"),
])
def test_rows_say_what_was_clustered(tmp_path, kind, source, expected):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"format": "dist_cluster.shards/1", "split": "train", "kind": kind, "total": 1,
                                "class_names": [], "source": source, "image": {}, "feature_dim": 4,
                                "shards": [{"url": "train-000000.tar", "samples": 1, "start": 0}]}))
    assert clustered_name(str(path)) == expected
