"""Bringing one's own data: arrays and image folders to shards, and the messages for bad inputs."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from dist_cluster.cluster.arrays import InputError, check_features, check_k, read_features
from dist_cluster.cluster.inputs import resolve_data
from dist_cluster.data import load_feature_arrays


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)).astype(np.float32), np.array(["a", "b"] * 20)
    return tmp_path, x, y


def test_npy_npz_pt_round_trip_and_cache(arrays):
    tmp, x, y = arrays
    np.save(tmp / "x.npy", x)
    np.save(tmp / "y.npy", y)
    np.savez(tmp / "d.npz", X=x, target=y)
    torch.save({"features": torch.from_numpy(x), "labels": torch.arange(40) % 2}, tmp / "d.pt")
    root = str(tmp / "data")
    plain = resolve_data(str(tmp / "x.npy"), root)
    assert not plain.labelled and plain.n == 40 and plain.feature_dim == 5
    f, lab, idx = load_feature_arrays(plain.manifest)
    assert torch.equal(f, torch.from_numpy(x)) and (lab == -1).all() and idx.tolist() == list(range(40))
    labelled = resolve_data(str(tmp / "x.npy"), root, labels=str(tmp / "y.npy"))
    assert labelled.labelled and labelled.manifest != plain.manifest
    assert load_feature_arrays(labelled.manifest)[1].tolist() == [0, 1] * 20
    npz = resolve_data(str(tmp / "d.npz"), root, labels_key="target")
    assert npz.labelled and npz.name == "d"
    pt = resolve_data(str(tmp / "d.pt"), root)
    assert pt.labelled and load_feature_arrays(pt.manifest)[1].tolist() == [0, 1] * 20
    stamp = os.path.getmtime(plain.manifest)      # same content: not written again
    assert resolve_data(str(tmp / "x.npy"), root).manifest == plain.manifest
    assert os.path.getmtime(plain.manifest) == stamp


def test_messages_for_bad_arrays(arrays):
    tmp, x, y = arrays
    np.save(tmp / "x.npy", x)
    np.savez(tmp / "d.npz", feats=x, classes=y)
    with pytest.raises(InputError, match=r"no array 'labels'.*arrays found: \['classes', 'feats'\]"):
        read_features(str(tmp / "d.npz"), features_key="feats", labels_key="labels")
    with pytest.raises(InputError, match=r"cannot tell which array holds the features; arrays found"):
        read_features(str(tmp / "d.npz"))
    with pytest.raises(InputError, match=r"holds one array, not named arrays.*--labels"):
        read_features(str(tmp / "x.npy"), labels_key="labels")
    bad = x.copy()
    bad[7, 2] = np.nan
    bad[9, 0] = np.inf
    with pytest.raises(InputError, match=r"2 rows hold NaN or Inf; the first is row 7 \(NaN in column 2\)"):
        check_features(bad)
    with pytest.raises(InputError, match=r"expected a 2-D array N×D.*got shape \(40, 5, 1\).*flatten"):
        check_features(x[:, :, None])
    with pytest.raises(InputError, match=r"got shape \(5,\).*reshape\(1, -1\)"):
        check_features(x[0])
    np.save(tmp / "short.npy", y[:10])
    with pytest.raises(InputError, match="10 labels for 40 samples"):
        resolve_data(str(tmp / "x.npy"), str(tmp / "data"), labels=str(tmp / "short.npy"))
    with pytest.raises(InputError, match="k=41 clusters but only N=40 samples"):
        check_k(41, 40)
    with pytest.raises(InputError, match="expected a .npy/.npz/.pt array, a folder of images or a manifest"):
        resolve_data(str(tmp / "x.csv"), str(tmp / "data"))


def test_image_folders_with_and_without_class_folders(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "flat").mkdir()
    for j in range(6):
        img = Image.fromarray(rng.integers(0, 255, (12, 10), dtype=np.uint8))
        img.save(tmp_path / "flat" / f"{j}.png")
        (tmp_path / "tree" / f"c{j % 2}").mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / "tree" / f"c{j % 2}" / f"{j}.png")
    flat = resolve_data(str(tmp_path / "flat"), str(tmp_path / "data"))
    assert flat.kind == "image" and flat.n == 6 and not flat.labelled and flat.image_size == (12, 10)
    tree = resolve_data(str(tmp_path / "tree"), str(tmp_path / "data"))
    assert tree.labelled and tree.n == 6
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files found"):
        resolve_data(str(tmp_path / "empty"), str(tmp_path / "data"))


def test_make_shards_features_from_npy_with_labels_file_and_clear_key_error(arrays, capsys):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
    import make_shards
    tmp, x, y = arrays
    np.save(tmp / "x.npy", x)
    np.save(tmp / "y.npy", y)
    make_shards.main(["features", "--path", str(tmp / "x.npy"), "--labels", str(tmp / "y.npy"), "--out",
                      str(tmp / "s"), "--workers", "1", "--no-progress"])
    f, lab, _ = load_feature_arrays(str(tmp / "s" / "train.json"))
    assert torch.equal(f, torch.from_numpy(x)) and lab.tolist() == [0, 1] * 20
    np.savez(tmp / "d.npz", feats=x)
    with pytest.raises(SystemExit, match=r"has no array 'features' for the features; arrays found: \['feats'\]"):
        make_shards.main(["features", "--path", str(tmp / "d.npz"), "--features-key", "features", "--out",
                          str(tmp / "s2"), "--no-progress"])
