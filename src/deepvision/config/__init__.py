"""Experiment configuration: schema, loading, overrides."""

from deepvision.config.coerce import from_dict, to_dict
from deepvision.config.io import apply_overrides, build_config, config_to_yaml, load_config, read_yaml
from deepvision.config.schema import (
    AugmentConfig,
    CheckpointConfig,
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)

__all__ = [
    "AugmentConfig",
    "CheckpointConfig",
    "Config",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "build_config",
    "config_to_yaml",
    "from_dict",
    "load_config",
    "read_yaml",
    "to_dict",
]
