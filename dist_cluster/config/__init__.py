from dist_cluster.config.overrides import (
                                           ConfigError,
                                           all_keys,
                                           apply_overrides,
                                           check_choices,
                                           from_dict,
                                           register_preset,
                                           set_key,
                                           to_dict,
)
from dist_cluster.config.schema import CheckpointConfig, EngineConfig, ExperimentConfig, OptimConfig, SchedConfig

__all__ = ["ConfigError", "all_keys", "apply_overrides", "check_choices", "from_dict", "register_preset", "set_key",
           "to_dict",
           "CheckpointConfig", "EngineConfig", "ExperimentConfig", "OptimConfig", "SchedConfig"]
