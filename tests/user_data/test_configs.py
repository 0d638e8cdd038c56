"""What the CLI sizes from the data: input width, global batch ≤ N, UNIC's τ₂, PICI's image size."""
import numpy as np
import pytest

from dist_cluster.cluster.arrays import InputError
from dist_cluster.cluster.configs import method_config, pici_image_size, unic_tau2
from dist_cluster.cluster.inputs import UserData, array_manifest


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    x = np.random.default_rng(0).normal(size=(300, 240)).astype(np.float32)
    path = array_manifest(x, None, str(tmp_path_factory.mktemp("cfg")), "small")
    return x, UserData(path, "small", "feature", 300, False, 240)


def test_cgmcr2_sized_to_a_small_wide_array(small, tmp_path):
    _, data = small
    cfg = method_config("cgmcr2", data, 10, ["method.global_batch=4096"], str(tmp_path), world=2)
    assert cfg.method.in_dim == 240 and cfg.method.global_batch == 300      # clamped: it overrides data.batch_size
    assert cfg.data.batch_size * 2 <= 300 and cfg.data.train == data.manifest and cfg.data.name == "small"
    plain = method_config("cgmcr2", data, 10, [], str(tmp_path), world=2)
    assert plain.data.batch_size == 150 and not plain.engine.progress    # recipe batch 512 > N: N, split in two
    assert (plain.ckpt.every_steps, plain.ckpt.save_at_epoch_end) == (0, False)


def test_unic_tau2_and_pici_size_rules(small, tmp_path):
    _, data = small
    cfg = method_config("unic", data, 5, [], str(tmp_path))
    assert cfg.method.tau2 == unic_tau2(300, 5) == 30 and cfg.method.num_clusters == 5
    assert unic_tau2(60000, 10) == 3000 and unic_tau2(100, 10) == 20       # at least 2·τ₁
    assert pici_image_size(8, 8) == 16 and pici_image_size(28, 28) == 28 and pici_image_size(30, 17) == 32
    assert pici_image_size(500, 300) == 64
    with pytest.raises(InputError, match="pici trains on images"):
        method_config("pici", data, 5, [], str(tmp_path))
    with pytest.raises(InputError, match="tau2=400 must be below N=300"):
        method_config("unic", data, 5, ["method.tau2=400"], str(tmp_path))


def test_a_240_dim_array_trains_end_to_end(small, tmp_path):
    from dist_cluster import CgMCR2
    x, _ = small
    est = CgMCR2(n_clusters=4, hidden=64, feature_dim=16, warmup_epochs=1, finetune_epochs=1, batch_size=1000,
                 data_root=str(tmp_path / "d"), run_dir=str(tmp_path / "r")).fit(x)
    assert est.labels_.shape == (300,) and est.transform(x).shape == (300, 16)
