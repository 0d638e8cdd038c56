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


def test_log_every_gives_about_30_lines_unless_given(small, tmp_path):
    from dist_cluster.cluster.configs import total_steps
    _, data = small
    cfg = method_config("unic", data, 5, ["method.epochs=40"], str(tmp_path))
    steps = total_steps(cfg, "unic", 300, 1)                   # batch 128 of 300: 2 steps × 40 epochs
    assert steps == 80 and 20 <= steps // cfg.engine.log_every <= 50
    assert method_config("unic", data, 5, ["engine.log_every=7"], str(tmp_path)).engine.log_every == 7
    tiny = method_config("cgmcr2", data, 5, ["method.warmup_epochs=1", "method.finetune_epochs=1"], str(tmp_path))
    assert tiny.engine.log_every == 1                           # 2 steps: every one


def test_epochs_scaled_down_only_where_the_recipe_would_exceed_its_step_budget(tmp_path):
    from dist_cluster.cluster.configs import STEP_BUDGET, total_steps
    big = UserData("unused.json", "big", "feature", 60_000, False, 64)
    cfg = method_config("cgmcr2", big, 10, [], str(tmp_path))   # 117 steps per epoch: 80 epochs would be 9,360
    assert (cfg.method.warmup_epochs, cfg.method.finetune_epochs) == (3, 10)
    assert total_steps(cfg, "cgmcr2", 60_000, 1) <= STEP_BUDGET["cgmcr2"] * 1.1
    given = method_config("cgmcr2", big, 10, ["method.finetune_epochs=60"], str(tmp_path))
    assert (given.method.warmup_epochs, given.method.finetune_epochs) == (20, 60)   # the user's schedule stands
    small_n = UserData("unused.json", "d", "feature", 1797, False, 64)
    assert method_config("cgmcr2", small_n, 10, [], str(tmp_path)).method.finetune_epochs == 60
    images = UserData("unused.json", "imgs", "image", 5000, False, 0, (28, 28))
    pici = method_config("pici", images, 10, [], str(tmp_path)).method          # 52 steps per epoch
    assert (pici.pretrain_epochs, pici.train_epochs, pici.boost_epochs) == (4, 12, 4)
