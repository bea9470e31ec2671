"""N->N: one tag per word. Words are split into subwords; the first subword of each word carries its tag in
training and predicts it back. A sentence longer than a model's learned positions is tagged in windows of whole
words, so that every word gets its tag whatever the sentence's length."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit import metrics as scoring
from attnkit.config import DataConfig, ModelConfig
from attnkit.data.batching import pad
from attnkit.data.readers import Tagged, read_tagged
from attnkit.errors import AttnkitError
from attnkit.nn import Encoder
from attnkit.nn.dropout import Dropout
from attnkit.runtime import to_device
from attnkit.tasks.base import IGNORE_INDEX, Batch, Task


class Tagger(nn.Module):
    """Encoder, dropout, and a linear layer giving tag scores at every position."""

    def __init__(self, config: ModelConfig, num_tags: int) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.dropout = Dropout(config.dropout)
        self.head = nn.Linear(config.dim, num_tags)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        # ids, mask: (batch, time) -> tag logits (batch, time, tags)
        return self.head(self.dropout(self.encoder(ids, mask)))


class TagTask(Task):
    name = "tag"
    main_metric = "accuracy"
    gold_unit, gold_name = "token", "tag"

    def __init__(self, config, data, tokenizer, model_config, state=None) -> None:
        super().__init__(config, data, tokenizer, model_config, state)
        self.tags: list[str] = list((state or {}).get("tags", []))

    def state(self) -> dict:
        return {"tags": self.tags}

    @staticmethod
    def read(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> list[Tagged]:
        return read_tagged(path, need_targets)

    def inputs(self, texts: list[str]) -> list[Tagged]:
        return [Tagged(text.split(), [], i + 1) for i, text in enumerate(texts)]

    def fit(self, examples: list[Tagged]) -> None:
        counts = Counter(tag for e in examples for tag in e.tags)
        self.tags = [tag for tag, _ in counts.most_common()]
        if len(self.tags) < 2:
            raise AttnkitError(f"training data: need at least two tags, found {self.tags}")

    def check(self, examples: list[Tagged], path: str | os.PathLike) -> None:
        known = set(self.tags)
        for e in examples:
            for tag in e.tags:
                if tag not in known:
                    raise AttnkitError(f"{path}:{e.line}: tag {tag!r} never seen in training (sentence starting here)")

    def unseen(self, examples: list[Tagged]) -> Counter[str]:
        known = set(self.tags)
        return Counter(tag for e in examples for tag in e.tags if tag not in known)

    @staticmethod
    def tokenizer_texts(examples: list[Tagged]) -> Iterator[str]:
        return (" ".join(e.words) for e in examples)

    def encode(self, examples: list[Tagged], training: bool) -> list[dict]:
        """Training keeps the first max_length subwords; evaluation and prediction keep every word."""
        index = {tag: i for i, tag in enumerate(self.tags)}
        items = []
        for e, (ids, starts) in zip(examples, self.tokenizer.encode_words_batch([e.words for e in examples])):
            if training:
                ids = ids[: self.data.max_length]
            labels = [IGNORE_INDEX] * len(ids)
            for start, tag in zip(starts, e.tags):
                if start < len(ids):
                    labels[start] = index.get(tag, IGNORE_INDEX)  # a tag the model never saw: nothing to learn
            items.append({"ids": ids, "labels": labels, "starts": starts})
        return items

    def size(self, item: dict) -> int:
        return len(item["ids"])

    def collate(self, items: list[dict]) -> Batch:
        ids, mask = pad([item["ids"] for item in items], self.tokenizer.pad_id)
        labels, _ = pad([item["labels"] for item in items], IGNORE_INDEX)
        starts, start_mask = pad([item["starts"] for item in items], 0)
        return {"ids": ids, "mask": mask, "labels": labels, "starts": starts, "start_mask": start_mask}

    def build_model(self) -> Tagger:
        config = self.model_config
        return Tagger(config, len(self.tags))

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """Scored at each word's first subword (the other positions hold IGNORE_INDEX)."""
        logits, labels = model(batch["ids"], batch["mask"]).flatten(0, 1), batch["labels"].flatten()
        total = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction="sum")
        return total, (labels != IGNORE_INDEX).sum()

    def decode(self, model: nn.Module, batch: Batch) -> list[list[str]]:
        """A tag per word. A sentence longer than the learned positions is read in consecutive windows that fit."""
        config = self.model_config
        limit = config.max_positions if config.positions == "learned" else None
        if limit is None or batch["ids"].shape[1] <= limit:
            return self._tags(model, batch)
        pieces, owners = [], []
        for row, (ids, mask, starts, start_mask) in enumerate(
            zip(batch["ids"], batch["mask"], batch["starts"], batch["start_mask"])
        ):
            ids, starts = ids[mask].tolist(), starts[start_mask].tolist()
            for first, last, begin, end in windows(starts, len(ids), limit):
                local = [start - begin for start in starts[first:last]]
                pieces.append({"ids": ids[begin:end], "labels": [IGNORE_INDEX] * (end - begin), "starts": local})
                owners.append(row)
        joined: list[list[str]] = [[] for _ in batch["ids"]]
        for row, tags in zip(owners, self._tags(model, to_device(self.collate(pieces), batch["ids"].device))):
            joined[row] += tags
        return joined

    def _tags(self, model: nn.Module, batch: Batch) -> list[list[str]]:
        best = model(batch["ids"], batch["mask"]).argmax(-1)  # (batch, time)
        word_tags = torch.gather(best, 1, batch["starts"])  # the tag at each word's first subword
        return [[self.tags[int(t)] for t in row[keep]] for row, keep in zip(word_tags, batch["start_mask"])]

    def metrics(self, predictions: list[list[str]], examples: list[Tagged]) -> dict:
        return scoring.tagging(predictions, [e.tags for e in examples])

    def render(self, prediction: list[str]) -> str:
        return " ".join(prediction)

    def record(self, example: Tagged, prediction: list[str]) -> dict:
        return {"words": example.words, "tags": prediction}


def windows(starts: list[int], length: int, limit: int) -> list[tuple[int, int, int, int]]:
    """Consecutive windows of whole words, each at most `limit` subwords, as (first word, last word + 1, first
    subword, last subword + 1), for a sentence of `length` subwords whose words begin at `starts`. A word longer
    than `limit` is a window of its own, cut to its first `limit` subwords."""
    ends = [*starts[1:], length]
    spans, first = [], 0
    while first < len(starts):
        begin, last = starts[first], first + 1
        while last < len(starts) and ends[last] - begin <= limit:
            last += 1
        spans.append((first, last, begin, min(ends[last - 1], begin + limit)))
        first = last
    return spans
