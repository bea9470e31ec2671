"""attnkit: the Transformer of "Attention Is All You Need", made usable. This is its face: what a user imports.
docs/architecture.md shows the wings behind it.

The names below are imported on first use (PEP 562), so that `attnkit --help`, argument errors and config errors
answer before PyTorch is imported (a second or more)."""

from __future__ import annotations

import importlib
import os
import typing

# OpenMP's threads (libgomp's, PyTorch's on Linux) spin 300,000 turns waiting for their next piece of work before
# they sleep. Beside another busy process on the same cores those turns take the cores from the threads that have
# work: training and predicting beside one other 2-thread PyTorch process took 3.7x its time alone, with 10,000
# turns 2.3x, and alone as fast (benchmarks/busy_machine.py; docs/benchmarks.md, "A busy machine"). libgomp reads
# it when PyTorch loads, so it is set here, before anything of attnkit imports torch; the user's own GOMP_SPINCOUNT
# or OMP_WAIT_POLICY wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

if typing.TYPE_CHECKING:
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
_HOMES = {
    "attention": "attnkit.apps.attention_maps",
    "export": "attnkit.apps.export",
    "DataConfig": "attnkit.config",
    "ModelConfig": "attnkit.config",
    "TaskConfig": "attnkit.config",
    "TokenizerConfig": "attnkit.config",
    "TrainConfig": "attnkit.config",
    "AttnkitError": "attnkit.errors",
    "Pipeline": "attnkit.inference.pipeline",
    "load": "attnkit.inference.pipeline",
    "build_model": "attnkit.nn",
    "Sampling": "attnkit.nn.decoding",
    "pretrain": "attnkit.training.corpus",
    "train": "attnkit.training.loop",
    "RunConfig": "attnkit.training.run",
}
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


def __getattr__(name: str) -> typing.Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'attnkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # later lookups find it directly
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
