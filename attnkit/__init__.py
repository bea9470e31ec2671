"""attnkit: the Transformer of "Attention Is All You Need", made usable."""

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.nn import build_model

__version__ = "0.1.0"
__all__ = ["AttnkitError", "ModelConfig", "build_model"]
