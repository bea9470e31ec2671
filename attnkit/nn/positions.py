"""Position information, one small class per scheme, all with the same three hooks.

A stack calls each hook once per forward: `add_to` changes the embeddings (absolute schemes), `score_bias`
returns a bias added to the attention scores (relative, ALiBi), `rotary` returns the (cos, sin) angles that
rotate queries and keys (rotary). A scheme overrides the one hook it needs; the base class is "no positions".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError


class Positions(nn.Module):
    """No position information: without it self-attention is permutation-equivariant."""

    def add_to(self, x: Tensor, offset: int) -> Tensor:
        """x: (batch, time, dim), holding positions offset .. offset + time - 1."""
        return x

    def score_bias(self, query_len: int, key_len: int, offset: int) -> Tensor | None:
        """A (1, heads, query, key) bias; queries are positions offset.., keys are positions 0 .. key_len - 1."""
        return None

    def rotary(self, query_len: int, offset: int, device: torch.device) -> tuple[Tensor, Tensor] | None:
        """(cos, sin), each (query, head_dim), for positions offset .. offset + query_len - 1."""
        return None


class SinusoidalPositions(Positions):
    """The paper's fixed encoding (section 3.5): sines in the first half of the dimensions, cosines in the second.
    The paper interleaves them; this layout (tensor2tensor's, Marian's) is a fixed permutation of the same values."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 10000.0 ** (-torch.arange(0, dim // 2) * 2.0 / dim), persistent=False)

    def add_to(self, x: Tensor, offset: int) -> Tensor:
        position = torch.arange(offset, offset + x.shape[1], device=x.device, dtype=torch.float32)
        angles = position[:, None] * self.inv_freq[None, :]
        return x + torch.cat([angles.sin(), angles.cos()], dim=-1).to(x.dtype)


class LearnedPositions(Positions):
    """A trained vector per absolute position (BERT, GPT-2); sequences cannot be longer than the table."""

    def __init__(self, max_positions: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(max_positions, dim)

    def add_to(self, x: Tensor, offset: int) -> Tensor:
        return _add_learned(self.table, x, offset)


def _add_learned(table: nn.Embedding, x: Tensor, offset: int) -> Tensor:
    end = offset + x.shape[1]
    if end > table.num_embeddings:
        raise AttnkitError(
            f"a sequence of {end} tokens is longer than this model's {table.num_embeddings} learned "
            "positions (model.max_positions); truncate the input or use relative, rotary or alibi positions"
        )
    return x + table.weight[offset:end]


class RelativePositionBias(Positions):
    """T5's learned bias per head for each bucket of relative distance: exact buckets for near tokens,
    logarithmic buckets up to `max_distance`, one bucket for everything farther (so any length works)."""

    def __init__(self, num_heads: int, num_buckets: int, max_distance: int, bidirectional: bool) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.bias = nn.Embedding(num_buckets, num_heads)

    def score_bias(self, query_len: int, key_len: int, offset: int) -> Tensor:
        device = self.bias.weight.device
        query = torch.arange(offset, offset + query_len, device=device)
        relative = torch.arange(key_len, device=device)[None, :] - query[:, None]  # key - query
        return self.bias(self._bucket(relative)).permute(2, 0, 1).unsqueeze(0)

    def _bucket(self, relative: Tensor) -> Tensor:
        buckets = self.num_buckets
        bucket = torch.zeros_like(relative)
        if self.bidirectional:
            buckets //= 2
            bucket += (relative > 0).long() * buckets
            distance = relative.abs()
        else:
            distance = (-relative).clamp(min=0)
        exact = buckets // 2
        log_bucket = (
            exact
            + (
                torch.log(distance.float().clamp(min=1) / exact)
                / math.log(self.max_distance / exact)
                * (buckets - exact)
            ).long()
        )
        return bucket + torch.where(distance < exact, distance, log_bucket.clamp(max=buckets - 1))


class LearnedAndRelativePositions(RelativePositionBias):
    """MPNet's two at once: a learned vector per absolute position added to the embeddings, and T5's relative bias
    (one table shared by every layer) added to the attention scores."""

    def __init__(self, max_positions: int, dim: int, num_heads: int, num_buckets: int, max_distance: int) -> None:
        super().__init__(num_heads, num_buckets, max_distance, bidirectional=True)
        self.table = nn.Embedding(max_positions, dim)

    def add_to(self, x: Tensor, offset: int) -> Tensor:
        return _add_learned(self.table, x, offset)


class RotaryPositions(Positions):
    """RoPE (Su et al. 2021): queries and keys are rotated by position-dependent angles, so their dot product
    depends on relative distance only. Its frequencies may be stretched for inputs longer than in pretraining
    (`rotary_frequencies`)."""

    def __init__(self, head_dim: int, base: float, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.register_buffer("inv_freq", rotary_frequencies(head_dim, base, config), persistent=False)

    def rotary(self, query_len: int, offset: int, device: torch.device) -> tuple[Tensor, Tensor]:
        position = torch.arange(offset, offset + query_len, device=device, dtype=torch.float32)
        angles = position[:, None] * self.inv_freq[None, :]
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()


def rotary_frequencies(head_dim: int, base: float, config: ModelConfig | None = None) -> Tensor:
    """The angle per position of each pair of dimensions, base^(-2i / head_dim) (computed as transformers does,
    so that long positions give the same angles), scaled as config.rotary_scaling says: linear divides every
    frequency by rotary_factor; llama3 (Llama 3.1) divides the low ones, keeps the high ones and blends between."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if config is None or config.rotary_scaling == "none":
        return inv_freq
    factor = config.rotary_factor
    if config.rotary_scaling == "linear":
        return inv_freq / factor
    original, low, high = (
        config.rotary_original_positions,
        config.rotary_low_freq_factor,
        config.rotary_high_freq_factor,
    )
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelength - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    between = ~(wavelength < original / high) & ~(wavelength > original / low)
    return torch.where(between, blended, scaled)


class ALiBi(Positions):
    """ALiBi (Press et al. 2022): each head subtracts slope * distance from its scores; no parameters."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def score_bias(self, query_len: int, key_len: int, offset: int) -> Tensor:
        query = torch.arange(offset, offset + query_len, device=self.slopes.device)
        distance = (torch.arange(key_len, device=self.slopes.device)[None, :] - query[:, None]).abs()
        return (-self.slopes[:, None, None] * distance).unsqueeze(0)


def alibi_slopes(num_heads: int) -> Tensor:
    """Geometric slopes 2^(-8/n), 2^(-16/n), ...; for a head count that is not a power of two, the paper's
    interleaving of the next power's slopes."""
    power = 2 ** math.floor(math.log2(num_heads))
    slopes = [2 ** (-8 * (i + 1) / power) for i in range(power)]
    extra = [2 ** (-4 * (i + 1) / power) for i in range(2 * power)][0::2]
    return torch.tensor(slopes + extra[: num_heads - power])


def build_positions(config: ModelConfig, bidirectional: bool) -> Positions:
    """The scheme named by config.positions, for a stack whose attention is bidirectional (encoder) or causal."""
    width = config.embedding_width
    if config.positions == "sinusoidal":
        return SinusoidalPositions(width)
    if config.positions == "learned":
        return LearnedPositions(config.max_positions, width)
    if config.positions == "relative":
        return RelativePositionBias(
            config.num_heads, config.relative_buckets, config.relative_max_distance, bidirectional
        )
    if config.positions == "learned+relative":
        buckets, distance = config.relative_buckets, config.relative_max_distance
        return LearnedAndRelativePositions(config.max_positions, width, config.num_heads, buckets, distance)
    if config.positions == "rotary":
        return RotaryPositions(config.head_dim, config.rotary_base, config)
    if config.positions == "alibi":
        return ALiBi(config.num_heads)
    return Positions()
