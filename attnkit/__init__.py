"""attnkit: the Transformer of "Attention Is All You Need", made usable. This is its face: what a user imports.
docs/architecture.md shows the wings behind it."""

from attnkit.apps.attention_maps import attention
from attnkit.apps.export import export
from attnkit.config import DataConfig, ModelConfig, TaskConfig, TokenizerConfig, TrainConfig
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline, load
from attnkit.nn import build_model
from attnkit.nn.decoding import Sampling
from attnkit.training.corpus import pretrain
from attnkit.training.loop import train
from attnkit.training.run import RunConfig

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
    "attention",
    "build_model",
    "export",
    "load",
    "pretrain",
    "train",
]
