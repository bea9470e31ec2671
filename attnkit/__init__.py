"""attnkit: the Transformer of "Attention Is All You Need", made usable."""

from attnkit.config import DataConfig, ModelConfig, RunConfig, TaskConfig, TokenizerConfig, TrainConfig
from attnkit.errors import AttnkitError
from attnkit.export import export
from attnkit.generate import Sampling
from attnkit.nn import build_model
from attnkit.pipeline import Pipeline, load
from attnkit.pretrain import pretrain
from attnkit.train import train

__version__ = "0.1.0"
__all__ = [
    "AttnkitError",
    "DataConfig",
    "ModelConfig",
    "Pipeline",
    "RunConfig",
    "Sampling",
    "TaskConfig",
    "TokenizerConfig",
    "TrainConfig",
    "build_model",
    "export",
    "load",
    "pretrain",
    "train",
]
