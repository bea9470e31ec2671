"""attnkit: the Transformer of "Attention Is All You Need", made usable."""

from attnkit.config import DataConfig, ModelConfig, RunConfig, TaskConfig, TokenizerConfig, TrainConfig
from attnkit.errors import AttnkitError
from attnkit.nn import build_model
from attnkit.pipeline import Pipeline, load
from attnkit.train import train

__version__ = "0.1.0"
__all__ = [
    "AttnkitError",
    "DataConfig",
    "ModelConfig",
    "Pipeline",
    "RunConfig",
    "TaskConfig",
    "TokenizerConfig",
    "TrainConfig",
    "build_model",
    "load",
    "train",
]
