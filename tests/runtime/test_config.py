from dataclasses import dataclass, field

import pytest
import yaml

from dist_cluster.config import ConfigError, ExperimentConfig, apply_overrides, from_dict, register_preset, to_dict
from dist_cluster.data.config import DataConfig


@dataclass
class Inner:
    ratio: float = 0.5
    names: tuple[str, ...] = ("a",)


@dataclass
class MethodCfg:
    depth: int = 2
    mode: str = "paper"
    inner: Inner = field(default_factory=Inner)
    weights: dict = field(default_factory=dict)


def make():
    return ExperimentConfig(name="t", method=MethodCfg())


def test_nested_overrides_are_typed():
    cfg = apply_overrides(make(), ["optim.lr=3e-4", "data.batch_size=256", "engine.zero_stage=3",
                                   "method.inner.ratio=1", "method.inner.names=x,y", "engine.progress=false",
                                   "method.weights={a: 1.5}"])
    assert cfg.optim.lr == 3e-4 and cfg.data.batch_size == 256 and cfg.engine.zero_stage == 3
    assert cfg.method.inner.ratio == 1.0 and isinstance(cfg.method.inner.ratio, float)
    assert cfg.method.inner.names == ("x", "y") and cfg.engine.progress is False
    assert cfg.method.weights == {"a": 1.5}


def test_unknown_key_names_it_and_the_closest_valid_keys():
    with pytest.raises(ConfigError) as e:
        apply_overrides(make(), ["optim.lrr=1"])
    assert "optim.lrr" in str(e.value) and "optim.lr" in str(e.value)
    with pytest.raises(ConfigError) as e:
        apply_overrides(make(), ["batch_size=8"])
    assert "'batch_size'" in str(e.value) and "data.batch_size" in str(e.value)


def test_bad_value_names_field_and_expected_type():
    with pytest.raises(ConfigError, match=r"'data.batch_size'.*expected int"):
        apply_overrides(make(), ["data.batch_size=big"])
    with pytest.raises(ConfigError, match=r"'engine.progress'.*bool"):
        apply_overrides(make(), ["engine.progress=maybe"])
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides(make(), ["optim.lr"])


def test_section_preset_then_field_override():
    register_preset(DataConfig, "tiny_test")(lambda: DataConfig(name="tiny_test", batch_size=7))
    cfg = apply_overrides(make(), ["data.num_workers=3", "data=tiny_test"])
    assert cfg.data.name == "tiny_test" and cfg.data.batch_size == 7 and cfg.data.num_workers == 3
    with pytest.raises(ConfigError, match="preset"):
        apply_overrides(make(), ["data=nope"])


def test_resolved_config_round_trips_through_yaml():
    cfg = apply_overrides(make(), ["method.depth=5", "seed=9", "method.inner.names=p,q"])
    back = from_dict(ExperimentConfig, yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    assert back == cfg and isinstance(back.method, MethodCfg)
