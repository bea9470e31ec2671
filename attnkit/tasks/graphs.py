"""What a task model is as ONNX graphs: wrappers that take ONNX's inputs (int64 ids and masks, 1 on real tokens),
and random example batches, padded, on which `attnkit export --onnx` traces each graph and checks it against
attnkit. Each task's `onnx_graphs` picks from these; the exporting itself is attnkit.apps.onnx_export's."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnkit.nn import EncoderDecoder

# (source lengths, target lengths) of the example batches: a graph is traced on the first, and checked on both
# (a graph that kept the first batch's shapes fails on the second)
EXAMPLES = [([7, 4], [5, 3]), ([12, 2, 9], [9, 1, 4])]

Inputs = dict[str, Tensor]


@dataclass
class Graph:
    """One graph: its module (called with the example's inputs in order), its output's name and what it holds,
    and example batches with, for a per-token output, the (batch, time) mask of its real positions (padding is
    not compared)."""

    name: str
    module: nn.Module
    output: str
    meaning: str
    examples: list[tuple[Inputs, Tensor | None]]

    def describe(self) -> dict:
        """The graph as onnx.json names it: its inputs and what its output holds."""
        return {"inputs": list(self.examples[0][0]), "output": self.meaning}


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


class TargetPrefix(nn.Module):
    """An encoder-decoder's decoder over a whole target prefix, given the encoder's states (no cache)."""

    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, decoder_input_ids: Tensor, encoder_hidden_states: Tensor, encoder_attention_mask: Tensor
    ) -> Tensor:
        return self.model.decode(decoder_input_ids, encoder_hidden_states, encoder_attention_mask.bool())


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
    return Graph("model", module, output, meaning, examples)


def seq2seq_graphs(model: EncoderDecoder, vocab: int, pad_id: int) -> list[Graph]:
    """encoder.onnx (the source's states) and decoder.onnx (next-token logits for a whole target prefix)."""
    sources = source_examples(vocab, pad_id)
    decoder_examples = []
    for n, ((inputs, mask), (_, target_lengths)) in enumerate(zip(sources, EXAMPLES)):
        target, target_mask = random_batch(vocab, target_lengths, pad_id, seed=len(EXAMPLES) + n)
        with torch.no_grad():
            states = model.encode(inputs["input_ids"], mask)
        step = {"decoder_input_ids": target, "encoder_hidden_states": states, "encoder_attention_mask": mask.long()}
        decoder_examples.append((step, target_mask))
    return [
        Graph(
            "encoder", IdsAndMask(model.encoder), "last_hidden_state", "last_hidden_state (batch, time, dim)", sources
        ),
        Graph(
            "decoder",
            TargetPrefix(model),
            "logits",
            "logits (batch, target time, vocab): the next token",
            decoder_examples,
        ),
    ]
