"""`python -m dist_cluster.cluster` on digits: labelled and unlabelled arrays, KMeans, torchrun, bad inputs."""
import csv
import json

import pytest
from cli_helpers import SHORT_CGMCR2, cluster_cli, digits_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    return digits_files(folder) | {"root": str(folder / "data"), "tmp": folder}


@pytest.fixture(scope="module")
def labelled(files):
    run = files["tmp"] / "labelled"
    out = cluster_cli(files["npz"], "--method", "cgmcr2", "--k", 10, "--run-dir", run, "--data-root", files["root"],
                      *SHORT_CGMCR2).stdout
    return run, out


def test_labelled_array_gives_clusters_csv_and_an_honest_table(labelled):
    run, out = labelled
    rows = list(csv.reader(open(run / "clusters.csv")))
    assert rows[0] == ["index", "cluster", "confidence"] and len(rows) == 1798
    assert [int(r[0]) for r in rows[1:]] == list(range(1797))
    assert all(0 <= int(r[1]) < 10 and 0.0 <= float(r[2]) <= 1.0 for r in rows[1:])
    summary = json.load(open(run / "summary.json"))
    table = summary["table"]
    assert table["data"] == "digits" and "training data" in table["split"] and table["nmi_average"] == "arithmetic"
    assert {r["input"] for k, r in table["rows"].items() if k.startswith(("kmeans", "spectral"))} == \
        {"as given", "L2-normalised"}
    assert 0 <= table["rows"]["cgmcr2"]["acc"] <= 1 and "beaten_by" in table["rows"]["cgmcr2"]
    assert "CgMCR² on 'digits': N=1797, k=10, world size 1, training data" in out and "[CgMCR² report] CgMCR²-SC" in out
    assert table["rows"]["kmeans"]["name"] == "KMeans (scikit-learn)" and "pre-features" not in out
    assert (run / "figures" / "results_table.png").exists() and (run / "figures" / "confusion.png").exists()
    assert summary["label_free"]["final_loss"] is not None and len(summary["label_free"]["cluster_sizes"]) == 10


def test_unlabelled_array_reports_no_accuracy(files):
    run = files["tmp"] / "unlabelled"
    out = cluster_cli(files["X"], "--method", "cgmcr2", "--k", 10, "--run-dir", run, "--data-root", files["root"],
                      "--baselines", "kmeans", *SHORT_CGMCR2).stdout
    summary = json.load(open(run / "summary.json"))
    assert "acc" not in summary["metrics"] and "no labels: ACC/NMI/ARI not computed" in out
    assert all("acc" not in r for r in summary["table"]["rows"].values())
    assert -1 <= summary["label_free"]["silhouette"] <= 1 and sum(summary["label_free"]["cluster_sizes"]) == 1797
    assert list(summary["table"]["rows"]) == ["cgmcr2", "cgmcr2_sc", "kmeans", "kmeans_l2"]     # --baselines kmeans
    assert not (run / "figures" / "confusion.png").exists()


def _kmeans_run(files, name, *args):
    run = files["tmp"] / name
    out = cluster_cli(files["X"], "--labels", files["y"], "--method", "kmeans", "--k", 10, "--run-dir", run,
                      "--data-root", files["root"], *args).stdout
    return run, out, json.load(open(run / "summary.json"))


def test_kmeans_with_labels_file(files):
    run, out, summary = _kmeans_run(files, "km")
    rows = summary["table"]["rows"]
    assert list(rows) == ["kmeans_dist_cluster", "kmeans", "kmeans_l2", "spectral", "spectral_l2"]
    assert rows["kmeans_dist_cluster"]["acc"] > 0.6 and rows["kmeans_dist_cluster"]["name"] == "KMeans (dist_cluster)"
    assert "KMeans (dist_cluster) on 'X': N=1797, k=10, world size 1, training data" in out
    assert "KMeans (scikit-learn)" in out and "SpectralClustering (scikit-learn)" in out and "pre-features" not in out
    assert len(open(run / "clusters.csv").readlines()) == 1798
    steps = [s["step"] for s in summary["report"]["steps"]]     # every step printed with its time
    assert all(f"[report] {s}: " in out for s in steps) and any(s.startswith("silhouette") for s in steps)


def test_baseline_rows_do_not_follow_the_methods_seed(files):
    """Baselines use the fixed report seed: two --seed values give the same baseline rows."""
    tables = [_kmeans_run(files, f"km_seed{s}", "--seed", s, "--baselines", b)[2]["table"]["rows"]
              for s, b in ((0, "all"), (7, "all"), (7, "none"))]
    base = [{k: {m: v for m, v in r.items() if m != "time_s"} for k, r in t.items() if k != "kmeans_dist_cluster"}
            for t in tables]
    assert base[0] == base[1] and list(base[0]) == ["kmeans", "kmeans_l2", "spectral", "spectral_l2"]
    assert base[2] == {} and list(tables[2]) == ["kmeans_dist_cluster"]      # --baselines none


@pytest.mark.parametrize("args, message", [
    (["--k", "5000"], "k=5000 clusters but only N=1797 samples"),
    (["--k", "10", "--labels-key", "classes"],
     "has no array 'classes' for the labels; arrays found: ['features', 'labels']"),
    (["--k", "10", "method.finetune_epoch=3"], "method.finetune_epochs"),
])
def test_bad_inputs_are_refused_before_training(files, args, message):
    res = cluster_cli(files["npz"], "--method", "cgmcr2", *args, "--data-root", files["root"], check=False)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_torchrun_two_processes_two_seeds(files):
    run = files["tmp"] / "torchrun"
    cluster_cli(files["npz"], "--method", "unic", "--k", 10, "--n-init", 2, "--run-dir", run, "--data-root",
                files["root"], "method.epochs=2", nproc=2)
    summary = json.load(open(run / "summary.json"))
    sel = summary["n_init"]
    assert sel["seeds"] == [0, 1] and sel["rule"] == "silhouette"
    assert sel["selected_seed"] == sel["seeds"][sel["scores"].index(max(sel["scores"]))] == sel["by_rule"]["silhouette"]
    assert isinstance(sel["selected_beats_mean"], bool) and len(sel["acc"]) == 2
    seed_summary = json.load(open(run / f"seed_{sel['selected_seed']}" / "summary.json"))
    assert seed_summary["world_size"] == 2 and summary["metrics"]["acc"] == sel["selected_acc"]
    assert len(open(run / "clusters.csv").readlines()) == 1798


def test_pici_on_a_folder_of_images_with_class_folders(files):
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    folder = files["tmp"] / "pngs"
    for i in range(120):
        (folder / str(d.target[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[i] * 255 / 16).astype("uint8")).save(folder / str(d.target[i]) / f"{i}.png")
    run = files["tmp"] / "pici"
    out = cluster_cli(folder, "--method", "pici", "--k", 10, "--run-dir", run, "--data-root", files["root"],
                      "method.pretrain_epochs=1", "method.train_epochs=1", "method.boost_epochs=1").stdout
    cfg = open(run / "config.yaml").read()
    assert "image_size: 16" in cfg                    # 8×8 images → 16 (the smallest PICI size)
    table = json.load(open(run / "results_table.json"))
    assert "pici" in table["rows"] and table["data"] == "pngs" and "KMeans (scikit-learn)" in out
    assert table["rows"]["pici"]["clustered"] == "images" and table["rows"]["kmeans"]["clustered"] == "pixels"
    assert len(open(run / "clusters.csv").readlines()) == 121
