"""The settings every wing reads: their schema (schema.py), how they are read from YAML and JSON with errors that
name the key and line (fields.py, loader.py). A run's whole configuration, `RunConfig`, is attnkit.training's:
making one from a user's YAML needs the tasks and the Hugging Face families' presets."""

from attnkit.config.fields import describe_type, from_dict, located, to_dict, value_matches
from attnkit.config.loader import apply_override, read_yaml
from attnkit.config.schema import (
    TASK_ARCHS,
    DataConfig,
    LoraConfig,
    ModelConfig,
    TaskConfig,
    TokenizerConfig,
    TrainConfig,
)

__all__ = [
    "TASK_ARCHS",
    "DataConfig",
    "ModelConfig",
    "TaskConfig",
    "TokenizerConfig",
    "TrainConfig",
    "LoraConfig",
    "apply_override",
    "describe_type",
    "from_dict",
    "located",
    "read_yaml",
    "to_dict",
    "value_matches",
]
