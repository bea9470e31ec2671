"""The Transformer architecture and its decoding (greedy, sampling, beam search), and nothing else: no I/O, no
tokenizers, no tasks."""

from attnkit.nn.attention import DecoderCache, KVCache, MultiHeadAttention, causal_mask, record_attention
from attnkit.nn.layers import DecoderLayer, EncoderLayer, FeedForward
from attnkit.nn.positions import (
    ALiBi,
    LearnedPositions,
    Positions,
    RelativePositionBias,
    RotaryPositions,
    SinusoidalPositions,
)
from attnkit.nn.transformer import (
    Decoder,
    Encoder,
    EncoderDecoder,
    EncoderEngine,
    build_model,
    count_parameters,
    describe,
    encoder_of,
)

__all__ = [
    "ALiBi",
    "Decoder",
    "DecoderCache",
    "DecoderLayer",
    "Encoder",
    "EncoderDecoder",
    "EncoderEngine",
    "EncoderLayer",
    "FeedForward",
    "KVCache",
    "LearnedPositions",
    "MultiHeadAttention",
    "Positions",
    "RelativePositionBias",
    "RotaryPositions",
    "SinusoidalPositions",
    "build_model",
    "causal_mask",
    "count_parameters",
    "describe",
    "encoder_of",
    "record_attention",
]
