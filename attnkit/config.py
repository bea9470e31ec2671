"""Configuration dataclasses, and the one place that checks a config a user wrote.

A checkpoint's config.json holds these dataclasses as JSON, so loading a model needs no code from the user.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Literal

from attnkit.errors import AttnkitError

Arch = Literal["encoder", "decoder", "encoder-decoder"]
Activation = Literal["relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu"]
Norm = Literal["layernorm", "rmsnorm"]
Positions = Literal["none", "sinusoidal", "learned", "relative", "rotary", "alibi"]


@dataclass
class ModelConfig:
    """Every architecture choice of an attnkit Transformer. The defaults build a small pre-norm encoder."""

    arch: Arch = "encoder"
    vocab_size: int = 8000
    target_vocab_size: int | None = None  # encoder-decoder with its own target vocabulary; None shares vocab_size
    dim: int = 256  # d_model in the paper
    num_heads: int = 4  # h
    ff_dim: int = 1024  # d_ff
    num_layers: int = 4  # N: encoder layers, or decoder layers for arch="decoder"
    num_decoder_layers: int | None = None  # encoder-decoder only; None means num_layers
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: Activation = "gelu"
    norm: Norm = "layernorm"
    norm_eps: float = 1e-5
    norm_first: bool = True  # pre-norm (stable without warmup tricks); False is the paper's post-norm
    positions: Positions = "sinusoidal"
    max_positions: int = 512  # size of the learned position table; other schemes extrapolate beyond it
    relative_buckets: int = 32
    relative_max_distance: int = 128
    rotary_base: float = 10000.0
    scale_embeddings: bool = False  # multiply token embeddings by sqrt(dim), as the paper does
    embedding_norm: bool = False  # a norm right after the embeddings (BERT, BART)
    bias: bool = True  # biases in the attention and feed-forward projections
    attention_scale: float | None = None  # None is 1/sqrt(head_dim); T5 uses 1.0
    share_embeddings: bool = True  # encoder-decoder: source and target share one embedding table
    tie_output: bool = True  # the output projection reuses the target embedding matrix
    output_bias: bool = False
    pad_id: int = 0

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise AttnkitError(f"model.dim ({self.dim}) must be divisible by model.num_heads ({self.num_heads})")
        if self.positions == "rotary" and (self.dim // self.num_heads) % 2:
            raise AttnkitError("model.positions=rotary needs an even head dimension (dim / num_heads)")
        if self.arch == "encoder-decoder" and self.share_embeddings and self.target_vocab_size not in (
            None,
            self.vocab_size,
        ):
            raise AttnkitError("model.share_embeddings needs target_vocab_size equal to vocab_size (or unset)")
        for name in ("vocab_size", "dim", "num_heads", "ff_dim", "num_layers", "max_positions"):
            if getattr(self, name) <= 0:
                raise AttnkitError(f"model.{name} must be positive, got {getattr(self, name)}")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise AttnkitError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers if self.num_decoder_layers is not None else self.num_layers

    @property
    def output_vocab_size(self) -> int:
        return self.target_vocab_size if self.target_vocab_size is not None else self.vocab_size


T = typing.TypeVar("T")


def from_dict(cls: type[T], values: object, where: str) -> T:
    """Build dataclass `cls` from parsed JSON/YAML; `where` prefixes errors (e.g. "run.json: model")."""
    if not isinstance(values, dict):
        raise AttnkitError(f"{where}: expected a mapping of fields, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in known:
            raise AttnkitError(f"{where}.{key}: unknown field (known: {', '.join(sorted(known))})")
    for key, value in values.items():
        if not _matches(value, hints[key]):
            raise AttnkitError(f"{where}.{key}: expected {_describe(hints[key])}, got {value!r}")
    try:
        return cls(**values)
    except AttnkitError as error:
        raise AttnkitError(f"{where}: {error}") from None


def to_dict(config: object) -> dict:
    return dataclasses.asdict(config)  # type: ignore[call-overload]


def _matches(value: object, annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:  # JSON writes 1.0 as 1
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(annotation)
        return isinstance(value, dict) and all(_matches(k, key) and _matches(v, item) for k, v in value.items())
    return isinstance(value, annotation)  # type: ignore[arg-type]


def _describe(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))
