"""Two texts -> 1: a label for a pair of texts (natural-language inference, paraphrase, question-answer relevance).
Both are read as one sequence, <s> a </s> b </s> (BERT's [CLS] a [SEP] b [SEP]), the second text and its end marked
as segment 1 where the architecture has segments (BERT's token types); a pair longer than data.max_length is cut
from the longer text first. The helpers here serve the regress task's pairs too."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from attnkit.config import DataConfig
from attnkit.data.batching import pad
from attnkit.data.readers import Labelled, TextPair, read_text_pairs
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.interop.hf import TaskExport
from attnkit.tasks.base import Batch, Task
from attnkit.tasks.classify import ClassifyTask
from attnkit.tasks.graphs import Graph, IdsMaskAndSegments, encoder_graph
from attnkit.tasks.losses import IGNORE_INDEX

FIELDS = ("text_a", "text_b")  # a pair's two texts, as a request and a JSON record name them


def read_pairs_of(data: DataConfig, path: str | os.PathLike, need_labels: bool) -> Iterator[TextPair]:
    settings = ("data.text_a_column", "data.text_b_column", "data.label_column")
    return read_text_pairs(path, data.text_a_column, data.text_b_column, data.label_column, need_labels, settings)


def shown(example: Labelled | TextPair) -> str:
    """An example's text as a report shows it: a pair's two texts on two lines."""
    return f"{example.text_a}\n{example.text_b}" if isinstance(example, TextPair) else example.text


def pair_inputs(raw: list, where: str) -> list[TextPair]:
    """A pair per raw input: (text_a, text_b), or a line "text_a<TAB>text_b"; a blank line is a blank pair."""
    pairs = []
    for line, item in enumerate(raw, start=1):
        if isinstance(item, str):
            fields = item.split("\t") if item.strip() else ["", ""]
        elif isinstance(item, (tuple, list)) and all(isinstance(text, str) for text in item):
            fields = list(item)
        else:
            fields = []
        if len(fields) != 2:
            raise AttnkitError(
                f"{where}:{line}: a pair model reads two texts: (text_a, text_b), or a line of both separated by "
                f"one tab (found {len(fields)} field{'s' if len(fields) != 1 else ''})"
            )
        if bool(fields[0].strip()) != bool(fields[1].strip()):
            raise AttnkitError(f"{where}:{line}: one text of the pair is blank; a pair model reads two")
        pairs.append(TextPair(fields[0], fields[1], "", line))
    return pairs


def blank_pair(raw: object) -> bool:
    """A blank line, or a pair of blank texts."""
    texts = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, (tuple, list)) else ["?"]
    return not any(isinstance(text, str) and text.strip() for text in texts)


def pair_texts(examples: list[TextPair]) -> Iterator[str]:
    for e in examples:
        yield e.text_a
        yield e.text_b


def encode_pairs(
    tokenizer: Tokenizer, examples: list[TextPair], max_length: int | None, decoder: bool = False
) -> list[tuple[list, list | None]]:
    """Each pair's ids, <s> a </s> b </s>, and segment ids (0 up to the first </s>, 1 after), within `max_length`
    tokens (None: uncut); for a `decoder`, each text after the tokenizer's start token where its template puts one
    (Llama's <s> a <s> b, as transformers' tokenizer frames a pair; GPT-2's a b), without segments."""
    firsts = tokenizer.encode_batch([e.text_a for e in examples])
    seconds = tokenizer.encode_batch([e.text_b for e in examples])
    start = tokenizer.prompt_start
    specials = 2 * len(start) if decoder else len(tokenizer.add_pair_specials([], [])[0])
    keep = None if max_length is None else max(max_length - specials, 0)
    cut = [_cut(a, b, keep) for a, b in zip(firsts, seconds)]
    if decoder:
        return [([*start, *a, *start, *b], None) for a, b in cut]
    return [tokenizer.add_pair_specials(a, b) for a, b in cut]


def encoded_pairs(task: Task, examples: list[TextPair], max_length: int | None) -> list[tuple[list, list | None]]:
    """`encode_pairs` as `task`'s model reads them (an encoder's, a decoder's)."""
    return encode_pairs(task.tokenizer, examples, max_length, task.model_config.arch == "decoder")


def pair_item(ids: list[int], segments: list[int] | None, **rest: object) -> dict:
    """An encoded pair: its ids, its segments where the model reads them, and what else the task keeps."""
    return {"ids": ids, **({"segments": segments} if segments is not None else {}), **rest}


def _cut(first: list[int], second: list[int], keep: int | None) -> tuple[list[int], list[int]]:
    """The two texts' tokens within `keep`, cut from the longer first (transformers' "longest_first"): a text of
    at most half of `keep` stays whole; otherwise both get half, the first the odd token."""
    if keep is None or len(first) + len(second) <= keep:
        return first, second
    if min(len(first), len(second)) * 2 <= keep:
        if len(first) <= len(second):
            return first, second[: keep - len(first)]
        return first[: keep - len(second)], second
    return first[: (keep + 1) // 2], second[: keep // 2]


def collate_pairs(items: list[dict], pad_id: int) -> Batch:
    ids, mask = pad([item["ids"] for item in items], pad_id)
    if "segments" not in items[0]:  # a decoder's pairs
        return {"ids": ids, "mask": mask}
    segments, _ = pad([item["segments"] for item in items], 0)
    return {"ids": ids, "mask": mask, "segments": segments}


class PairTask(ClassifyTask):
    name = "pair"
    reads_decoders = True  # a pair read as one text from a decoder's last state: Llama's <s> a <s> b
    input_fields = FIELDS
    input_name = "pair"

    @staticmethod
    def stream(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Iterator[TextPair]:
        return read_pairs_of(data, path, need_targets)

    @property
    def columns(self) -> str:
        return f"{self.data.text_a_column}, {self.data.text_b_column} -> {self.data.label_column}"

    def inputs(self, raw: list, where: str = "input") -> list[TextPair]:
        return pair_inputs(raw, where)

    def shown(self, example: TextPair) -> str:
        return shown(example)

    def blank(self, raw: object) -> bool:
        return blank_pair(raw)

    @staticmethod
    def tokenizer_texts(examples: list[TextPair]) -> Iterator[str]:
        return pair_texts(examples)

    def count_tokens(self, raw: list) -> list[int]:
        return [len(ids) for ids, _ in encoded_pairs(self, self.inputs(raw), None)]

    def encode(self, examples: list[TextPair], training: bool) -> list[dict]:
        index = {label: i for i, label in enumerate(self.labels)}
        encoded = encoded_pairs(self, examples, self.data.max_length)
        return [
            pair_item(ids, segments, label=index.get(e.label, IGNORE_INDEX))
            for e, (ids, segments) in zip(examples, encoded)
        ]

    def collate(self, items: list[dict]) -> Batch:
        batch = collate_pairs(items, self.tokenizer.pad_id)
        return {**batch, "labels": torch.tensor([item["label"] for item in items])}

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        return model(batch["ids"], batch["mask"], batch.get("segments"))

    def record(self, example: TextPair, prediction: dict | None) -> dict:
        texts = {"text_a": example.text_a, "text_b": example.text_b}
        return {**texts, **(prediction or {"label": None, "probability": None})}

    def hf_export(self, model: nn.Module) -> TaskExport:
        export = super().hf_export(model)
        export.pair = True
        export.usage = [
            'logits = model(**tokenizer(["A first text."], ["A second text."], return_tensors="pt")).logits',
            "print(model.config.id2label[int(logits.argmax(-1)[0])])",
        ]
        return export

    def onnx_graphs(self, model: nn.Module) -> tuple[list[Graph], dict]:
        graphs, outputs = super().onnx_graphs(model)
        if self.model_config.segments:  # the second text's segment is an input of its own
            graphs[0] = pair_graph(model, self.tokenizer, "logits", "logits (batch, labels)")
        return graphs, outputs


def pair_graph(module: nn.Module, tokenizer: Tokenizer, output: str, meaning: str) -> Graph:
    """model.onnx of a pair model with segments: input_ids, attention_mask and token_type_ids."""
    wrapped = IdsMaskAndSegments(module)
    return encoder_graph(wrapped, tokenizer.vocab_size, tokenizer.pad_id, output, meaning, per_token=False)
