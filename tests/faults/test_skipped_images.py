"""R6: an image folder with one file that does not decode. The skip names the file (not a shard position), the
file gets no row in clusters.csv (every other row keeps its global index) and summary.json says
`data_skipped: 1` and names it."""
import csv
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
pytestmark = pytest.mark.slow

FILES = ["a0.png", "a1.png", "a2.png", "a3.png", "corrupt.png", "d0.png", "d1.png", "d2.png"]
CORRUPT = FILES.index("corrupt.png")     # sorted order is input order: a row after it shows the index kept


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image
    from sklearn.datasets import load_digits
    root, images = tmp_path_factory.mktemp("skips"), load_digits().images
    (root / "photos").mkdir()
    for i, name in enumerate(FILES):
        if name == "corrupt.png":   # a PNG signature, then garbage: cut off mid-download
            (root / "photos" / name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a png" * 8)
        else:
            Image.fromarray((images[i] * 255 / 16).astype("uint8")).save(root / "photos" / name)
    return root


def _cluster(folder, method, *extra):
    run = folder / f"run_{method}"
    res = subprocess.run([sys.executable, "-m", "dist_cluster.cluster", str(folder / "photos"), "--method", method,
                          "--k", "2", "--run-dir", str(run), "--cache-dir", str(folder / "cache"), *extra],
                         env=ENV, cwd=folder, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return run, res.stdout + res.stderr


def _check(run, out):
    corrupt = os.path.join("photos", "corrupt.png")
    warnings = [line for line in out.splitlines() if line.startswith("skipping")]
    assert warnings and all(corrupt in line for line in warnings), out[-3000:]
    rows = list(csv.reader(open(run / "clusters.csv")))
    assert rows[0] == ["index", "cluster", "confidence"]
    assert [int(r[0]) for r in rows[1:]] == [i for i in range(len(FILES)) if i != CORRUPT]
    summary = json.load(open(run / "summary.json"))
    assert summary["data_skipped"] == 1
    return summary


def test_feature_method_leaves_the_file_out_and_names_it(folder):
    run, out = _cluster(folder, "cgmcr2", "method.warmup_epochs=1", "method.finetune_epochs=1")
    _check(run, out)


def test_kmeans_leaves_the_file_out_and_names_it(folder):
    summary = _check(*_cluster(folder, "kmeans"))
    (entry,) = summary["skipped"]
    assert entry["index"] == CORRUPT and entry["file"].endswith(os.path.join("photos", "corrupt.png"))


def test_pici_table_has_no_row_for_the_image_a_neighbour_stood_in_for(folder):
    """PICI trains on the image manifest itself (no extraction): the undecodable image is replaced by its
    neighbour, whose repeat the predictions drop; the table's pixel rows drop it as well."""
    from dist_cluster.cluster.inputs import resolve_data, skip_summary
    from dist_cluster.cluster.report import inputs_for_table
    data = resolve_data(str(folder / "photos"), str(folder / "cache_pici"))
    assert data.kind == "image"
    x, _, index = inputs_for_table(data)
    assert index.tolist() == [i for i in range(len(FILES)) if i != CORRUPT] and len(x) == len(index)
    assert skip_summary(data, index)["data_skipped"] == 1
