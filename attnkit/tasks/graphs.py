"""What a task model is as ONNX graphs: wrappers that take ONNX's inputs (int64 ids and masks, 1 on real tokens),
and random example batches, padded, on which `attnkit export --onnx` traces each graph and checks it against
attnkit. Each task's `onnx_graphs` picks from these; the exporting itself is attnkit.apps.onnx_export's.

Decoders come with their cache: a step reads the keys and values of the steps before it (`past_keys`,
`past_values`: (layers, batch, kv heads, past, head_dim), past 0 at the first step; a model with grouped-query
attention has fewer key/value heads than query heads) and returns them with its own
appended (`present_keys`, `present_values`), so that a decoding loop feeds each new token alone, as attnkit's own
decoding does. An encoder-decoder's encoder graph also returns every decoder layer's cross-attention keys and
values (`cross_keys`, `cross_values`: (layers, batch, heads, source, head_dim)), computed once per input."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from attnkit.nn import Decoder, EncoderDecoder
from attnkit.nn.attention import DecoderCache, KVCache

# (source lengths, target lengths) of the example batches: a graph is traced on the first, and checked on both
# (a graph that kept the first batch's shapes fails on the second)
EXAMPLES = [([7, 4], [5, 3]), ([12, 2, 9], [9, 1, 4])]

Inputs = dict[str, Tensor]


@dataclass
class Graph:
    """One graph: its module (called with the example's inputs in order), its outputs' names and what the first
    holds, example batches with, for a per-token first output, the (batch, time) mask of its real positions (padding
    is not compared), and each input's dynamic axes (by default batch and time)."""

    name: str
    module: nn.Module
    outputs: list[str]
    meaning: str
    examples: list[tuple[Inputs, Tensor | None]]
    axes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def describe(self) -> dict:
        """The graph as onnx.json names it: its inputs, its outputs and what the first holds."""
        return {"inputs": list(self.examples[0][0]), "outputs": self.outputs, "output": self.meaning}

    def dynamic_axes(self, name: str) -> tuple[int, ...]:
        return self.axes.get(name, (0, 1))


class IdsAndMask(nn.Module):
    """A model that reads (ids, boolean mask), called with ONNX's int64 mask."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids, attention_mask.bool())


class IdsMaskAndSegments(nn.Module):
    """A model that reads (ids, boolean mask, segment ids): a pair's two texts, as BERT's token_type_ids."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        return self.model(input_ids, attention_mask.bool(), token_type_ids)


class _Concatenated(KVCache):
    """A self-attention cache that concatenates (a graph's past keys and values arrive whole each step)."""

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        self.key = key if self.key is None else torch.cat([self.key, key], dim=2)
        self.value = value if self.value is None else torch.cat([self.value, value], dim=2)
        self.length = self.key.shape[2]
        return self.key, self.value


def _cache(
    decoder: Decoder, past_keys: Tensor, past_values: Tensor, cross: tuple[Tensor, Tensor] | None
) -> DecoderCache:
    past = past_keys.shape[3]
    layers = range(len(decoder.layers))
    crossed = [KVCache(cross[0][i], cross[1][i]) if cross is not None else KVCache() for i in layers]
    return DecoderCache([_Concatenated(past_keys[i], past_values[i], past) for i in layers], crossed, None, past)


def _stacked(caches: list[KVCache]) -> tuple[Tensor, Tensor]:
    """Every layer's keys and values, stacked: (layers, batch, heads, time, head_dim)."""
    return torch.stack([kv.key for kv in caches]), torch.stack([kv.value for kv in caches])


class EncoderAndCrossCache(nn.Module):
    """An encoder-decoder's encoder: the source's states, and each decoder layer's cross-attention keys and values."""

    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        states = self.model.encode(input_ids, attention_mask.bool())
        cache = self.model.decoder.new_cache(states)
        keys, values = _stacked(cache.cross_attn)
        return states, keys, values


class CachedTranslatorStep(nn.Module):
    """An encoder-decoder's decoder over the new target tokens, given the cross-attention cache and the past."""

    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(
        self,
        decoder_input_ids: Tensor,
        encoder_attention_mask: Tensor,
        cross_keys: Tensor,
        cross_values: Tensor,
        past_keys: Tensor,
        past_values: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        cache = _cache(self.decoder, past_keys, past_values, (cross_keys, cross_values))
        logits = self.decoder(decoder_input_ids, None, None, encoder_attention_mask.bool(), cache=cache)
        return (logits, *_stacked(cache.self_attn))


class CachedLanguageModelStep(nn.Module):
    """A decoder-only model over the new tokens, given the past; attention_mask covers past and new tokens."""

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, past_keys: Tensor, past_values: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        cache = _cache(self.decoder, past_keys, past_values, None)
        past = past_keys.shape[3]
        cache.mask = attention_mask[:, :past].bool()
        logits = self.decoder(input_ids, attention_mask[:, past:].bool(), cache=cache)
        return (logits, *_stacked(cache.self_attn))


def random_batch(vocab: int, lengths: list[int], pad_id: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    """Random ids of `lengths`, padded: a batch where padding must not change the real rows."""
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    ids = torch.randint(0, vocab, (len(lengths), longest), generator=generator)
    mask = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
    return ids.masked_fill(~mask, pad_id), mask


def source_examples(vocab: int, pad_id: int, segments: bool = False) -> list[tuple[Inputs, Tensor]]:
    """The example batches of a graph that reads input_ids and attention_mask (and, with `segments`, a second
    segment from the middle of each row on), each with its mask of real positions."""
    examples = []
    for n, (lengths, _) in enumerate(EXAMPLES):
        ids, mask = random_batch(vocab, lengths, pad_id, seed=n)
        inputs = {"input_ids": ids, "attention_mask": mask.long()}
        if segments:
            second = torch.arange(ids.shape[1])[None, :] >= (torch.tensor(lengths)[:, None] // 2)
            inputs["token_type_ids"] = (second & mask).long()
        examples.append((inputs, mask))
    return examples


def encoder_graph(module: nn.Module, vocab: int, pad_id: int, output: str, meaning: str, per_token: bool) -> Graph:
    """model.onnx of a model that reads ids and a mask: per token (its padding not compared) or one row per text."""
    segments = isinstance(module, IdsMaskAndSegments)
    examples = [(inputs, mask if per_token else None) for inputs, mask in source_examples(vocab, pad_id, segments)]
    return Graph("model", module, [output], meaning, examples)


CACHE_AXES = {"past_keys": (1, 3), "past_values": (1, 3), "cross_keys": (1, 3), "cross_values": (1, 3)}
NEW_TOKENS = [2, 1]  # tokens of each example step, after PAST of them: traced on 2 (1 would fix the axis at 1)
PAST = [3, 0]


def cache_shape(decoder: Decoder) -> dict:
    """What onnx.json says of a decoder graph's cache: past_keys and past_values are (layers, batch, heads, past,
    head_dim), past 0 at the first step; heads: the key/value heads (fewer than the query heads with grouped-query
    attention)."""
    return {"layers": len(decoder.layers), "heads": decoder.config.kv_heads, "head_dim": decoder.config.head_dim}


def _past(decoder: Decoder, batch: int, length: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random past keys and values, as a graph's earlier steps would have returned them."""
    config = decoder.config
    shape = (len(decoder.layers), batch, config.kv_heads, length, config.head_dim)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def seq2seq_graphs(model: EncoderDecoder, vocab: int, pad_id: int) -> list[Graph]:
    """encoder.onnx (the source's states and the cross-attention cache) and decoder.onnx (next-token logits for
    the new target tokens, and the self-attention cache with them)."""
    sources = source_examples(vocab, pad_id)
    encoder = EncoderAndCrossCache(model)
    steps = []
    for n, (inputs, mask) in enumerate(sources):
        batch = mask.shape[0]
        with torch.no_grad():
            _, cross_keys, cross_values = encoder(inputs["input_ids"], inputs["attention_mask"])
        new = torch.randint(0, vocab, (batch, NEW_TOKENS[n]), generator=torch.Generator().manual_seed(n))
        past_keys, past_values = _past(model.decoder, batch, PAST[n], seed=n)
        step = {
            "decoder_input_ids": new,
            "encoder_attention_mask": inputs["attention_mask"],
            "cross_keys": cross_keys,
            "cross_values": cross_values,
            "past_keys": past_keys,
            "past_values": past_values,
        }
        steps.append((step, None))
    return [
        Graph(
            "encoder",
            encoder,
            ["last_hidden_state", "cross_keys", "cross_values"],
            "last_hidden_state (batch, time, dim)",
            sources,
        ),
        Graph(
            "decoder",
            CachedTranslatorStep(model),
            ["logits", "present_keys", "present_values"],
            "logits (batch, new tokens, vocab): the next token after each",
            steps,
            CACHE_AXES,
        ),
    ]


def language_model_graph(decoder: Decoder, vocab: int, pad_id: int) -> Graph:
    """model.onnx of a decoder-only model: next-token logits for the new tokens, and the cache with them."""
    examples = []
    for n, (lengths, _) in enumerate(EXAMPLES):
        ids, mask = random_batch(vocab, [NEW_TOKENS[n] + PAST[n]] * len(lengths), pad_id, seed=n)
        past_keys, past_values = _past(decoder, len(lengths), PAST[n], seed=n)
        step = {"input_ids": ids[:, PAST[n] :], "attention_mask": mask.long(), "past_keys": past_keys}
        examples.append(({**step, "past_values": past_values}, None))
    return Graph(
        "model",
        CachedLanguageModelStep(decoder),
        ["logits", "present_keys", "present_values"],
        "logits (batch, new tokens, vocab): the next token after each",
        examples,
        CACHE_AXES,
    )
