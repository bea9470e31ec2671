"""Multi-head attention (Vaswani et al. 2017, section 3.2), self or cross, with a KV cache for decoding.

Masks, everywhere in attnkit.nn: a boolean tensor where True means "may attend", broadcastable to
(batch, heads, query, key). A padding mask is `real_tokens[:, None, None, :]`, a causal mask comes from
`causal_mask`, and masks combine with `&`. Position schemes that bias the scores (relative, ALiBi) hand a float
bias of shape (1 or batch, heads, query, key) next to the mask; only `_scores_mask` below merges the two.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit.nn.dropout import dropout

HALF_EXPLICIT_MAX_KEYS = 128  # see _explicit_is_faster
ONE_QUERY_EXPLICIT_MAX_KEYS = 256
WHOLE_ROOM_MIN_ROWS = 4  # see KVCache.whole_room: below, its extra steps cost more than the copy they save


@dataclass
class KVCache:
    """Keys and values of one attention module, kept between decoding steps: (batch, heads, time, head_dim).
    Self-attention appends each step's into room that doubles when full, so that a step copies only its own
    keys and values (concatenating would copy all earlier ones every step); cross-attention stores its once."""

    key: Tensor | None = None  # (batch, heads, room, head_dim); the first `length` steps hold keys
    value: Tensor | None = None
    length: int = 0

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        end = self.length + key.shape[2]
        if self.key is None or self.value is None or end > self.key.shape[2]:
            self.key, self.value = self._grown(self.key, key, end), self._grown(self.value, value, end)
        self.key[:, :, self.length : end] = key
        self.value[:, :, self.length : end] = value
        self.length = end
        return self.key[:, :, :end], self.value[:, :, :end]

    def has_room(self) -> bool:
        """Whether there is room beyond the filled steps (not in a cache that concatenates, an exported graph's)."""
        return self.key is not None and self.key.shape[2] > self.length

    def whole_room(self, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """The keys and values with the room after them, and `mask` (..., length) widened to (..., room) with the
        room never attended: on the CPU a decoding step of 4 rows or more reads the whole room, contiguous, up to
        2.3x as fast as the filled steps alone, a view whose strides make PyTorch copy it first (at 1 or 2 rows the
        copy is cheap and the room's extra work costs more). The room holds zeros, so that its weights of zero
        multiply finite values."""
        assert self.key is not None and self.value is not None
        room = self.key.shape[2]
        if mask is None:
            return self.key, self.value, torch.arange(room, device=self.key.device) < self.length
        return self.key, self.value, F.pad(mask, (0, room - self.length), value=False)

    def _grown(self, old: Tensor | None, new: Tensor, end: int) -> Tensor:
        batch, heads, _, head_dim = new.shape
        room = new.new_empty(batch, heads, max(2 * end, 16), head_dim)
        kept = 0 if old is None else self.length
        if old is not None:
            room[:, :, :kept] = old[:, :, :kept]
        room[:, :, kept:].zero_()  # see whole_room
        return room

    def reorder(self, index: Tensor, moved: Tensor | None = None) -> None:
        """Keep batch rows `index`. `moved`, the rows whose `index` is not their own (a beam search's reordering
        of as many rows as it had), are the only ones copied, in place: most beams go on from themselves, and the
        copy of every row's keys and values was a tenth of a beam search's time."""
        if self.key is None or self.value is None:
            return
        if moved is None or self.length == 0 or index.shape[0] != self.key.shape[0]:  # cross-attention, fewer rows
            self.key, self.value = self.key.index_select(0, index), self.value.index_select(0, index)
            return
        if moved.numel():
            sources = index[moved]
            for cache in (self.key, self.value):  # the sources are read out before any row is written
                filled = cache[:, :, : self.length]
                filled.index_copy_(0, moved, filled.index_select(0, sources))


@dataclass
class DecoderCache:
    """Everything a decoder keeps between steps: self-attention grows by the new tokens each call,
    cross-attention keys/values are computed from the encoder output once."""

    self_attn: list[KVCache] = field(default_factory=list)
    cross_attn: list[KVCache] = field(default_factory=list)
    mask: Tensor | None = None  # (batch, time so far): True for real tokens
    length: int = 0

    @classmethod
    def empty(cls, num_layers: int) -> DecoderCache:
        return cls([KVCache() for _ in range(num_layers)], [KVCache() for _ in range(num_layers)])

    def reorder(self, index: Tensor, sources: Tensor | None = None) -> None:
        """Keep rows `index` of the decoded batch (beam search reorders hypotheses after each step) and rows
        `sources` of the cross-attention caches, which hold one row per source: the beams of a source share it
        (None: they stay as they are)."""
        rows = next((kv.key.shape[0] for kv in self.self_attn if kv.key is not None), None)
        moved = None  # the rows that take another row's place, when the batch keeps its size
        if index.shape[0] == rows:
            moved = (index != torch.arange(rows, device=index.device)).nonzero()[:, 0]
        for kv in self.self_attn:
            kv.reorder(index, moved)
        for kv in self.cross_attn if sources is not None else []:
            kv.reorder(sources)
        if self.mask is not None:
            self.mask = self.mask.index_select(0, index)


def causal_mask(query_len: int, key_len: int, device: torch.device | None = None) -> Tensor:
    """(query, key) mask: the queries are the last `query_len` of `key_len` positions, each sees itself and before."""
    return torch.ones(query_len, key_len, dtype=torch.bool, device=device).tril(key_len - query_len)


class MultiHeadAttention(nn.Module):
    """softmax(Q K^T * scale + bias) V over `num_heads` heads, then an output projection (W^O in the paper).

    Self-attention projects Q, K, V with one fused matrix; cross-attention projects Q from the decoder and
    K, V (fused) from the encoder output `memory`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        cross: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        scale: float | None = None,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        qkv_bias: bool | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads  # grouped-query attention: fewer key/value heads than queries
        self.head_dim = head_dim or dim // num_heads
        self.cross = cross
        self.dropout = dropout  # attention dropout, on the probabilities
        self.scale = scale
        queries, keys = num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        projection_bias = bias if qkv_bias is None else qkv_bias
        if cross:
            self.q_proj = nn.Linear(dim, queries, bias=projection_bias)
            self.kv_proj = nn.Linear(dim, 2 * keys, bias=projection_bias)
        else:
            self.qkv_proj = nn.Linear(dim, queries + 2 * keys, bias=projection_bias)  # [Q | K | V]
        self.out_proj = nn.Linear(queries, dim, bias=bias)
        self.recorded: list[Tensor] | None = None  # set by `record_attention`

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        causal: bool = False,
        bias: Tensor | None = None,
        rotary: tuple[Tensor, Tensor] | None = None,
        cache: KVCache | None = None,
        need_weights: bool = False,
        first_only: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Returns the output (batch, query, dim) and, with need_weights, the probabilities (batch, heads, query, key).

        x: (batch, query, dim); memory: (batch, key, dim) for cross-attention. `causal` adds the causal mask to
        `mask`; `rotary` is the (cos, sin) pair for the query positions; `cache` carries keys/values across calls;
        `first_only` (self-attention without a cache) attends with the first position's query alone: output
        (batch, 1, dim), attention dropout drawn as for every query.
        """
        batch, query_len, _ = x.shape
        q, k, v = self._queries_keys_values(x, memory, rotary, cache)
        step = not self.cross and query_len == 1 and bias is None  # a decoding step's self-attention, with a cache
        many_rows = batch >= WHOLE_ROOM_MIN_ROWS and x.device.type == "cpu"
        if cache is not None and step and many_rows and cache.has_room() and not need_weights and self.recorded is None:
            # (weights given back or recorded cover the filled steps alone: those take the filled steps)
            k, v, mask = cache.whole_room(mask)
            causal = False  # the one query sees every filled step
        drawn = None  # the shape of the attention dropout's draws, where the scores are fewer than it
        if first_only:
            drawn = torch.Size((batch, self.num_heads, query_len, k.shape[2]))
            q, query_len = q[:, :, :1], 1
            bias = None if bias is None else bias[:, :, :1]
        # q: (batch, heads, query, head_dim); k, v: (batch, kv heads, key, head_dim)

        groups = self.num_heads // self.num_kv_heads
        rows = query_len  # the queries that read each key/value head's keys, per batch row
        # a decoding step: each key/value head's queries in one product, no copy
        if groups > 1 and query_len == 1 and not first_only:
            q = q.unflatten(1, (self.num_kv_heads, groups)).flatten(2, 3)  # (batch, kv heads, groups, head_dim)
            bias = None if bias is None else bias.unflatten(1, (self.num_kv_heads, groups)).flatten(2, 3)
            causal, rows = False, groups  # one query sees every key
        elif groups > 1:  # each key/value head repeated for its queries (the keys of training and of a prompt)
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        beams = batch // k.shape[0]  # > 1 where the beams of a source share its cross-attention keys and values
        if beams > 1:  # each source's beams query its keys in one product: (sources, heads, beams * rows, head_dim)
            q = q.unflatten(0, (k.shape[0], beams)).transpose(1, 2).flatten(2, 3)
        attn_mask, is_causal = _scores_mask(mask, bias, causal, q.shape[2], k.shape[2], q)
        p = self.dropout if self.training else 0.0
        explicit = need_weights or self.recorded is not None or (p > 0 and first_only)  # first_only: its draws
        if explicit or _explicit_is_faster(q, k, p, query_len == 1):
            if is_causal:
                attn_mask = causal_mask(query_len, k.shape[2], x.device)
            out, weights = _attention_with_weights(q, k, v, attn_mask, p, self.scale, drawn)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=is_causal, scale=self.scale
            )
            weights = None
        if beams > 1:  # back to (batch, heads, rows, ...)
            out, weights = (None if t is None else _ungrouped(t, beams, rows) for t in (out, weights))
        if rows != query_len:  # back from (batch, kv heads, groups, ...) to (batch, heads, 1, ...)
            out, weights = (None if t is None else t.unflatten(2, (groups, 1)).flatten(1, 2) for t in (out, weights))
        if self.recorded is not None and weights is not None:
            self.recorded.append(weights.detach())
        out = out.transpose(1, 2).reshape(batch, query_len, self.num_heads * self.head_dim)
        return self.out_proj(out), weights if need_weights else None

    def _queries_keys_values(
        self, x: Tensor, memory: Tensor | None, rotary: tuple[Tensor, Tensor] | None, cache: KVCache | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """q (batch, heads, query, head_dim); k, v (batch, kv heads, key, head_dim): all of the cache's keys and
        values where there is one (cross-attention's: one row per source)."""
        if self.cross:
            q = self._heads(self.q_proj(x), self.num_heads)
            if cache is not None and cache.key is not None and cache.value is not None:
                return q, cache.key, cache.value
            assert memory is not None, "cross-attention needs the encoder output"
            k, v = self.keys_values(memory)
            if cache is not None:
                cache.key, cache.value = k, v
            return q, k, v
        values = self.num_kv_heads * self.head_dim
        qk, v = self.qkv_proj(x).split([self.num_heads * self.head_dim + values, values], dim=-1)
        qk, v = self._heads(qk, self.num_heads + self.num_kv_heads), self._heads(v, self.num_kv_heads)
        if rotary is not None:  # queries and keys rotated together: one pass of a few small operations
            qk = apply_rotary(qk, *rotary)
        q, k = qk.split([self.num_heads, self.num_kv_heads], dim=1)
        if cache is not None:
            k, v = cache.append(k, v)
        return q, k, v

    def keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention's keys and values of the encoder output (batch, kv heads, source, head_dim) each,
        contiguous: made once per input and kept, rather than copied by every decoding step's matrix product."""
        k, v = (self._heads(t, self.num_kv_heads).contiguous() for t in self.kv_proj(memory).chunk(2, dim=-1))
        return k, v

    def _heads(self, x: Tensor, heads: int) -> Tensor:
        """(batch, time, heads * head_dim) -> (batch, heads, time, head_dim)"""
        return x.unflatten(-1, (heads, self.head_dim)).transpose(1, 2)


def _ungrouped(x: Tensor, beams: int, rows: int) -> Tensor:
    """(sources, heads, beams * rows, n) -> (sources * beams, heads, rows, n)"""
    return x.unflatten(2, (beams, rows)).transpose(1, 2).flatten(0, 1)


def _explicit_is_faster(q: Tensor, k: Tensor, p: float, one_query: bool) -> bool:
    """On the CPU, where the explicit path beats scaled_dot_product_attention (benchmarks/attention_paths.py):
    with attention dropout (SDPA draws it with the slow bernoulli_; the explicit path uses attnkit's dropout);
    in bfloat16/float16 up to HALF_EXPLICIT_MAX_KEYS keys, where SDPA's flash kernel runs up to 9x slower than two
    half-precision matrix products (its backward most of all); and for a single query (a decoding step) up to
    ONE_QUERY_EXPLICIT_MAX_KEYS keys, where the kernel's per-call work costs up to 3x the arithmetic (`one_query`: a
    decoding step's, whose grouped heads may query one key/value head together, and whose beams their source's
    keys: 1% of a batch 16 beam 4 search). And in an ONNX
    export: the exporter's decomposition of scaled_dot_product_attention scales the transposed keys, a copy of the
    whole cache at every decoding step in onnxruntime, which fuses the explicit path's transpose into its product."""
    if q.device.type == "cpu":
        keys = k.shape[2]
        half = q.dtype in (torch.bfloat16, torch.float16) and keys <= HALF_EXPLICIT_MAX_KEYS
        if p > 0 or half or (one_query and keys <= ONE_QUERY_EXPLICIT_MAX_KEYS):
            return True
    return torch.onnx.is_in_onnx_export()  # asked last: it costs a decoding step more than the rest


def _scores_mask(
    mask: Tensor | None, bias: Tensor | None, causal: bool, query_len: int, key_len: int, q: Tensor
) -> tuple[Tensor | None, bool]:
    """The attn_mask and is_causal arguments of scaled_dot_product_attention for this call."""
    if causal:
        if mask is None and bias is None and query_len == key_len:
            return None, True  # lets SDPA use its fused causal kernel
        causal_part = causal_mask(query_len, key_len, q.device)
        mask = causal_part if mask is None else mask & causal_part
    if bias is None:
        return mask, False
    bias = bias.to(q.dtype)  # SDPA wants a float mask in the query's dtype (bfloat16 under autocast)
    if mask is None:
        return bias, False
    return bias.masked_fill(~mask, float("-inf")), False


def _attention_with_weights(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None,
    p: float,
    scale: float | None,
    drawn: torch.Size | None = None,
) -> tuple[Tensor, Tensor]:
    """The same math as scaled_dot_product_attention, keeping the probabilities (before dropout)."""
    scores = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    weights = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
    return dropout(weights, p, training=p > 0, drawn=drawn) @ v, weights


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the pairs (i, i + head_dim/2) of x: (batch, heads, time, head_dim) by cos/sin: (time, head_dim)."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, list[Tensor]]]:
    """Within the block, every attention module of `model` appends its probabilities (batch, heads, query, key)
    to the list under its module name, e.g. maps["encoder.layers.0.self_attn"]."""
    modules = {name: m for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    maps: dict[str, list[Tensor]] = {name: [] for name in modules}
    for name, module in modules.items():
        module.recorded = maps[name]
    try:
        yield maps
    finally:
        for module in modules.values():
            module.recorded = None
