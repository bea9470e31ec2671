"""Encoder, Decoder and EncoderDecoder, each built from one ModelConfig (the paper's figure 1)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from attnkit.config import ModelConfig
from attnkit.nn.attention import DecoderCache
from attnkit.nn.dropout import Dropout, dropout
from attnkit.nn.layers import DecoderLayer, EncoderLayer, build_norm
from attnkit.nn.positions import Positions, build_positions


class _Stack(nn.Module):
    """What encoder and decoder share: token embedding, positions, embedding norm and dropout, final norm."""

    def __init__(self, config: ModelConfig, embedding: nn.Embedding, bidirectional: bool) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding
        self.embed_scale = math.sqrt(config.embedding_width) if config.scale_embeddings else 1.0
        self.positions: Positions = build_positions(config, bidirectional)
        width = config.embedding_width
        self.embed_norm = build_norm(config, width) if config.embedding_norm else None
        self.dropout = Dropout(config.dropout)
        # narrower embeddings (ELECTRA) are projected up to the layers' width
        self.embed_proj = nn.Linear(width, config.dim) if width != config.dim else None
        self.final_norm = build_norm(config) if config.norm_first else None  # post-norm layers end normalized

    def _embed(self, tokens: Tensor, offset: int, features: Tensor | None = None) -> Tensor:
        x = self.embedding(tokens) * self.embed_scale
        if features is not None:
            x = x + features
        if self.training and self.config.token_dropout > 0:  # whole tokens vanish, the rest are rescaled
            x = x * dropout(x.new_ones(*tokens.shape, 1), self.config.token_dropout, training=True)
        x = self.positions.add_to(x, offset)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.dropout(x)
        return x if self.embed_proj is None else self.embed_proj(x)

    def _finish(self, x: Tensor) -> Tensor:
        return x if self.final_norm is None else self.final_norm(x)


class Encoder(_Stack):
    """N bidirectional layers over the source; returns the hidden states (batch, time, dim). With
    `config.segments`, an embedding of each token's segment (BERT's token type: the first or the second text of a
    pair) is added to its token's."""

    def __init__(self, config: ModelConfig, embedding: nn.Embedding | None = None) -> None:
        table = embedding or nn.Embedding(config.vocab_size, config.embedding_width)
        super().__init__(config, table, bidirectional=True)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        if embedding is None:
            init_weights(self, config)
        # made after the others, at zero, so that a model with segments starts as one without them would
        self.segments = nn.Embedding(config.segments, config.embedding_width) if config.segments else None
        if self.segments is not None:
            nn.init.zeros_(self.segments.weight)

    def forward(
        self,
        tokens: Tensor,
        mask: Tensor | None = None,
        features: Tensor | None = None,
        segments: Tensor | None = None,
        first_only: bool = False,
    ) -> Tensor:
        # tokens: (batch, time) ids; mask: (batch, time), True for real tokens; None when nothing is padded;
        # features: (batch, time, embedding width), added to the token embeddings (a tagger's word shapes);
        # segments: (batch, time) segment ids (None: all 0), read with config.segments only;
        # first_only: the states of the first position alone, (batch, 1, dim): the last layer computes that
        # position's query, output projection and feed-forward alone (a classifier reading <s>: the same numbers,
        # the last layer's work a quarter); all positions while attention maps are recorded
        time = tokens.shape[1]
        if self.segments is not None:
            segment = self.segments(segments if segments is not None else torch.zeros_like(tokens))
            features = segment if features is None else features + segment
        x = self._embed(tokens, 0, features)
        attn_mask = None if mask is None else mask[:, None, None, :]
        bias = self.positions.score_bias(time, time, 0)
        rotary = self.positions.rotary(time, 0, tokens.device)
        last = len(self.layers) - 1
        first_only = first_only and last >= 0 and self.layers[last].self_attn.recorded is None
        for i, layer in enumerate(self.layers):
            x = layer(x, attn_mask, bias, rotary, first_only=first_only and i == last)
        return self._finish(x)


class Decoder(_Stack):
    """N causal layers, with cross-attention to an encoder output if `cross`; returns next-token logits
    (batch, time, vocab), or (n, vocab) at the n `chosen` positions only (training skips the output projection
    of padding). With a `cache`, `tokens` are only the new ones and earlier steps are reused. Without `output`
    (the body of a classifier or a tagger) it has no output projection and gives `hidden_states` alone."""

    def __init__(
        self, config: ModelConfig, cross: bool = False, embedding: nn.Embedding | None = None, output: bool = True
    ) -> None:
        super().__init__(config, embedding or nn.Embedding(config.output_vocab_size, config.dim), bidirectional=False)
        num_layers = config.decoder_layers if cross else config.num_layers
        self.layers = nn.ModuleList(DecoderLayer(config, cross) for _ in range(num_layers))
        self.output = nn.Linear(config.dim, config.output_vocab_size, bias=config.output_bias) if output else None
        if embedding is None:
            init_weights(self, config)
        if config.tie_output and self.output is not None:
            self.output.weight = self.embedding.weight

    def new_cache(self, memory: Tensor | None = None) -> DecoderCache:
        """An empty cache; given the encoder output, its cross-attention keys and values are made now."""
        cache = DecoderCache.empty(len(self.layers))
        if memory is not None:
            for layer, kv in zip(self.layers, cache.cross_attn):
                kv.key, kv.value = layer.cross_attn.keys_values(memory)
        return cache

    def forward(
        self,
        tokens: Tensor,
        mask: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
        chosen: Tensor | None = None,
    ) -> Tensor:
        # tokens: (batch, tgt) ids; mask: (batch, tgt) True for real tokens; memory: (batch, src, dim);
        # memory_mask: (batch, src) True for real source tokens
        hidden = self.hidden_states(tokens, mask, memory, memory_mask, cache)
        if chosen is not None:
            hidden = hidden[chosen]
        scale = self.config.output_scale
        assert self.output is not None, "a decoder without its output projection gives hidden_states alone"
        return self.output(hidden * scale if scale != 1.0 else hidden)

    def hidden_states(
        self,
        tokens: Tensor,
        mask: Tensor | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """The last layer's states (batch, tgt, dim), normed, before the output projection."""
        batch, time = tokens.shape
        offset = cache.length if cache is not None else 0
        key_mask = mask
        if cache is not None:
            key_mask = cache.mask = _extend_mask(cache.mask, mask, batch, offset, time, tokens.device)
            cache.length += time
        x = self._embed(tokens, offset)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        cross_mask = None if memory_mask is None else memory_mask[:, None, None, :]
        bias = self.positions.score_bias(time, offset + time, offset)
        rotary = self.positions.rotary(time, offset, tokens.device)
        for i, layer in enumerate(self.layers):
            x = layer(
                x,
                attn_mask,
                memory,
                cross_mask,
                bias,
                rotary,
                self_cache=cache.self_attn[i] if cache is not None else None,
                cross_cache=cache.cross_attn[i] if cache is not None else None,
            )
        return self._finish(x)


def _extend_mask(
    past: Tensor | None, new: Tensor | None, batch: int, past_len: int, new_len: int, device: torch.device
) -> Tensor | None:
    """The padding mask over all keys in the cache after appending `new_len` tokens (None while nothing is padded)."""
    if past is None and new is None:
        return None
    if past is None:
        past = torch.ones(batch, past_len, dtype=torch.bool, device=device)
    if new is None:
        new = torch.ones(batch, new_len, dtype=torch.bool, device=device)
    return torch.cat([past, new], dim=1)


class EncoderDecoder(nn.Module):
    """The full Transformer: an encoder over the source, a decoder over the target attending to it."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        source_embedding = nn.Embedding(config.vocab_size, config.dim)
        target_embedding = (
            source_embedding if config.share_embeddings else nn.Embedding(config.output_vocab_size, config.dim)
        )
        self.encoder = Encoder(config, source_embedding)
        self.decoder = Decoder(config, cross=True, embedding=target_embedding)
        init_weights(self, config)

    def forward(
        self,
        source: Tensor,
        target: Tensor,
        source_mask: Tensor | None = None,
        target_mask: Tensor | None = None,
        chosen: Tensor | None = None,
    ) -> Tensor:
        # source: (batch, src); target: (batch, tgt) decoder inputs; masks True for real tokens -> (batch, tgt, vocab),
        # or (n, vocab) at the n `chosen` (batch, tgt) positions (inside forward, so DistributedDataParallel sees it)
        memory = self.encode(source, source_mask)
        return self.decoder(target, target_mask, memory, source_mask, chosen=chosen)

    def encode(self, source: Tensor, source_mask: Tensor | None = None) -> Tensor:
        return self.encoder(source, source_mask)

    def decode(
        self,
        target: Tensor,
        memory: Tensor,
        source_mask: Tensor | None = None,
        target_mask: Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        return self.decoder(target, target_mask, memory, source_mask, cache)


def init_weights(model: nn.Module, config: ModelConfig) -> None:
    """BERT's initialization: normal(0, 0.02) weights, zero biases; embeddings scaled by sqrt(dim) start at
    std dim^-0.5 so that the scaled vectors have unit variance."""
    embedding_std = config.embedding_width**-0.5 if config.scale_embeddings else 0.02
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=embedding_std)


ARCHITECTURES: dict[str, type[nn.Module]] = {"encoder": Encoder, "decoder": Decoder, "encoder-decoder": EncoderDecoder}


def build_model(config: ModelConfig, initialized: bool = True) -> nn.Module:
    """The Encoder, Decoder (causal, no cross-attention) or EncoderDecoder that `config.arch` names. Not
    `initialized`: its weights are left undrawn (whatever the memory held), for a model whose every weight is read
    next: no time spent drawing them, and no memory touched until they arrive (a large model loads in less)."""
    if initialized:
        return ARCHITECTURES[config.arch](config)
    with _undrawn():
        return ARCHITECTURES[config.arch](config)


@contextlib.contextmanager
def _undrawn() -> Iterator[None]:
    """torch.nn.init's functions do nothing within the block (as transformers' no_init_weights)."""
    saved = {name: getattr(nn.init, name) for name in INITS}
    for name in INITS:
        setattr(nn.init, name, _unchanged)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


INITS = ("normal_", "uniform_", "kaiming_uniform_", "zeros_", "ones_", "constant_", "trunc_normal_")


def _unchanged(tensor: Tensor, *args: object, **kwargs: object) -> Tensor:
    return tensor


def count_parameters(model: nn.Module) -> int:
    """Parameters, frozen ones too, counting a tied matrix once."""
    return sum(p.numel() for p in model.parameters())


class EngineModule(nn.Module):
    """A part of a model that another engine runs (CTranslate2's, attnkit.interop.ct2). It holds no parameters but
    `anchor`, which says (and `.to` moves) where its outputs go."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)


class EncoderEngine(EngineModule):
    """An Encoder's place, run by another engine: the same `forward`, the same states (with first_only, it may give
    every position's: the first is among them)."""


def encoder_of(model: nn.Module) -> Encoder | EncoderEngine | None:
    """The encoder inside a model: itself, an encoder-decoder's, or a task model's."""
    if isinstance(model, (Encoder, EncoderEngine)):
        return model
    inner = getattr(model, "encoder", None)
    return inner if isinstance(inner, (Encoder, EncoderEngine)) else None


def counted(number: int, thing: str) -> str:
    """ "1 layer", "6 layers"."""
    return f"{number} {thing}{'' if number == 1 else 's'}"


def _positions_detail(c: ModelConfig) -> str:
    if c.position_limit:
        return f" (up to {c.position_limit})"
    if c.positions == "rotary":
        scaled = f", {c.rotary_scaling} scaling x{c.rotary_factor:g}" if c.rotary_scaling != "none" else ""
        return f" (base {c.rotary_base:g}{scaled})"
    return ""


def describe(config: ModelConfig, output: bool = True) -> list[tuple[str, str]]:
    """The architecture of `config` in a few rows (`attnkit info`): layers, width, norm, positions, vocabulary (and
    a decoder's output projection, where it has one: a task's head replaces it)."""
    c = config
    if c.arch == "encoder-decoder":
        layers = f"{counted(c.num_layers, 'encoder layer')} + {counted(c.decoder_layers, 'decoder layer')}"
        vocab = f"{c.vocab_size} source / {c.output_vocab_size} target"
        vocab += ", shared embeddings" if c.share_embeddings else ", separate embeddings"
    else:
        layers = counted(c.num_layers, "causal layer" if c.arch == "decoder" else "layer")
        vocab = str(c.vocab_size)
    if c.arch != "encoder" and output:
        vocab += ", tied output projection" if c.tie_output else ", separate output projection"
    heads = f"{c.num_heads} heads of {c.head_dim}"
    if c.kv_heads != c.num_heads:
        heads += f" sharing {counted(c.kv_heads, 'key/value head')}"
    return [
        ("arch", f"{c.arch}, {layers}"),
        ("width", f"dim {c.dim}, {heads}, feed-forward {c.ff_dim} ({c.activation})"),
        ("norm", f"{c.norm}, {'pre-norm' if c.norm_first else 'post-norm'}"),
        ("positions", c.positions + _positions_detail(c)),
        ("vocabulary", vocab + (f", {c.segments} segments" if c.segments else "")),
    ]
