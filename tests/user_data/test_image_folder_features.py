"""A folder of images with CgMCR² and UNIC: frozen EfficientNet-Lite0 features are extracted once (cached), then
clustered; a flat folder (no class sub-folders) gets label-free figures only."""
import json

import pytest
from cli_helpers import SHORT_CGMCR2, cluster_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from PIL import Image
    from sklearn.datasets import load_digits
    d, root = load_digits(), tmp_path_factory.mktemp("images")
    for i in range(120):
        img = Image.fromarray((d.images[i] * 255 / 16).astype("uint8"))
        (root / "tree" / str(d.target[i])).mkdir(parents=True, exist_ok=True)
        img.save(root / "tree" / str(d.target[i]) / f"{i}.png")
        (root / "flat").mkdir(exist_ok=True)
        img.save(root / "flat" / f"{i}.png")
    return root


@pytest.mark.parametrize("method, extra", [("cgmcr2", SHORT_CGMCR2), ("unic", ["method.epochs=2"])])
def test_feature_methods_on_a_folder_of_images(folders, method, extra):
    run = folders / f"run_{method}"
    out = cluster_cli(folders / "tree", "--method", method, "--k", 10, "--run-dir", run, "--data-root",
                      folders / "data", *extra).stdout
    table = json.load(open(run / "results_table.json"))
    assert table["data"] == "tree" and method in table["rows"] and "acc" in table["rows"][method]
    assert len(open(run / "clusters.csv").readlines()) == 121
    assert "KMeans" in out and table["rows"]["kmeans"]["clustered"] == "EfficientNet-Lite0 features"


def test_flat_folder_gets_label_free_figures(folders):
    run = folders / "run_flat"
    cluster_cli(folders / "flat", "--method", "cgmcr2", "--k", 10, "--run-dir", run, "--data-root",
                folders / "data", *SHORT_CGMCR2)
    rows = json.load(open(run / "results_table.json"))["rows"]
    assert "acc" not in rows["cgmcr2"] and "silhouette" in rows["cgmcr2"]
