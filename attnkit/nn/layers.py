"""The layers of the paper's figure 1: position-wise feed-forward, and encoder/decoder layers made of
sublayers wrapped in a residual connection and a norm, before the sublayer (pre-norm) or after (post-norm)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit.config import ModelConfig
from attnkit.nn.attention import KVCache, MultiHeadAttention
from attnkit.nn.dropout import Dropout
from attnkit.runtime import FUSED_ACTIVATIONS, PackedLinear

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}
GATED: dict[str, Callable[[Tensor], Tensor]] = {  # activation(x W_gate) * (x W_up), Shazeer 2020
    "swiglu": F.silu,
    "geglu": F.gelu,
    "geglu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # T5 v1.1's "gated-gelu"
}


class FeedForward(nn.Module):
    """FFN(x) = activation(x W1 + b1) W2 + b2 (equation 2), or its gated variant for swiglu/geglu."""

    def __init__(self, dim: int, ff_dim: int, activation: str, bias: bool = True) -> None:
        super().__init__()
        self.gated = activation in GATED
        self.activation = GATED[activation] if self.gated else ACTIVATIONS[activation]
        self.fused = activation if activation in FUSED_ACTIVATIONS else None  # where in_proj is a PackedLinear
        self.in_proj = nn.Linear(dim, 2 * ff_dim if self.gated else ff_dim, bias=bias)  # gated: [gate | up]
        self.out_proj = nn.Linear(ff_dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        # x: (batch, time, dim)
        if self.fused and isinstance(self.in_proj, PackedLinear):
            return self.out_proj(self.in_proj(x, self.fused))
        hidden = self.in_proj(x)
        if self.gated:
            gate, up = hidden.chunk(2, dim=-1)
            hidden = self.activation(gate) * up
        else:
            hidden = self.activation(hidden)
        return self.out_proj(hidden)


class RMSNorm(nn.RMSNorm):
    """x / sqrt(mean(x^2) + eps) * w (Zhang and Sennrich 2019). Inference in float32 writes it out, to the same bits
    as PyTorch's, in four operations: its own, which allocates and converts as it goes, makes a decoding step of a
    small model 6% slower. Training and other dtypes take PyTorch's."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or x.dtype != torch.float32 or self.weight is None or self.eps is None:
            return super().forward(x)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def build_norm(config: ModelConfig, width: int | None = None) -> nn.Module:
    """The norm of `config` over `width` features (None: config.dim)."""
    size = config.dim if width is None else width
    if config.norm == "rmsnorm":
        return RMSNorm(size, eps=config.norm_eps)
    return nn.LayerNorm(size, eps=config.norm_eps)


class _ResidualLayer(nn.Module):
    """Holds the sublayer connection shared by encoder and decoder layers."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm_first = config.norm_first
        self.dropout = Dropout(config.dropout)

    def _sublayer(
        self, x: Tensor, norm: nn.Module, sublayer: Callable[[Tensor], Tensor], whole: torch.Size | None = None
    ) -> Tensor:
        """x plus the sublayer's output, normed before or after. The sublayer may give the first positions' alone
        (Encoder's first_only), and so does this then; `whole`: the shape of the layer's input, whose dropout
        draws are made (a layer that computes fewer positions draws the same random numbers)."""
        # dropout is called only in training: a module call that changes nothing costs a decoding step 2% of its time
        out = sublayer(norm(x) if self.norm_first else x)
        if self.training:
            out = self.dropout(out, whole)
        residual = x if out.shape[1] == x.shape[1] else x[:, : out.shape[1]]
        return residual + out if self.norm_first else norm(residual + out)


def _attention(config: ModelConfig, cross: bool = False) -> MultiHeadAttention:
    return MultiHeadAttention(
        config.dim,
        config.num_heads,
        cross=cross,
        dropout=config.attention_dropout,
        bias=config.bias,
        scale=config.attention_scale,
        num_kv_heads=config.kv_heads,
        head_dim=config.head_dim,
        qkv_bias=config.has_qkv_bias,
    )


def _feed_forward(config: ModelConfig) -> FeedForward:
    return FeedForward(config.dim, config.ff_dim, config.activation, bias=config.bias)


class EncoderLayer(_ResidualLayer):
    """Self-attention, then feed-forward; each in a residual connection with a norm."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.self_attn = _attention(config)
        self.self_attn_norm = build_norm(config)
        self.ff = _feed_forward(config)
        self.ff_norm = build_norm(config)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
        first_only: bool = False,
    ) -> Tensor:
        # x: (batch, time, dim); mask: (batch, 1, 1, time) or None. first_only: the output of the first position
        # alone (batch, 1, dim), its query attending to every key: the same numbers, with a quarter of the work
        whole = x.shape if first_only else None
        x = self._sublayer(
            x,
            self.self_attn_norm,
            lambda h: self.self_attn(h, mask=mask, bias=bias, rotary=rotary, first_only=first_only)[0],
            whole,
        )
        return self._sublayer(x, self.ff_norm, self.ff, whole)


class DecoderLayer(_ResidualLayer):
    """Causal self-attention, cross-attention to the encoder output (if `cross`), then feed-forward."""

    def __init__(self, config: ModelConfig, cross: bool) -> None:
        super().__init__(config)
        self.self_attn = _attention(config)
        self.self_attn_norm = build_norm(config)
        self.cross_attn = _attention(config, cross=True) if cross else None
        self.cross_attn_norm = build_norm(config) if cross else None
        self.ff = _feed_forward(config)
        self.ff_norm = build_norm(config)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        bias: Tensor | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
        self_cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
    ) -> Tensor:
        # x: (batch, tgt, dim); mask: (batch, 1, 1, key) padding of the keys or None (causality is added inside);
        # memory: (batch, src, dim); memory_mask: (batch, 1, 1, src)
        x = self._sublayer(
            x,
            self.self_attn_norm,
            lambda h: self.self_attn(h, mask=mask, causal=True, bias=bias, rotary=rotary, cache=self_cache)[0],
        )
        if self.cross_attn is not None and self.cross_attn_norm is not None:
            cross_attn = self.cross_attn
            x = self._sublayer(
                x, self.cross_attn_norm, lambda h: cross_attn(h, memory, mask=memory_mask, cache=cross_cache)[0]
            )
        return self._sublayer(x, self.ff_norm, self.ff)
