"""N->N: one tag per word. Words are split into subwords, between the tokenizer's start and end tokens (BERT's
[CLS] and [SEP], as a checkpoint read them in pretraining); the first subword of each word carries its tag in
training and predicts it back. A sentence longer than a model's learned positions is tagged in windows of whole
words, so that every word gets its tag whatever the sentence's length."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from attnkit.config import DataConfig, ModelConfig
from attnkit.data.batching import pad
from attnkit.data.readers import Tagged, read_tagged
from attnkit.errors import AttnkitError, require_finite
from attnkit.findings import Finding
from attnkit.interop.hf import TaskExport
from attnkit.nn.dropout import Dropout
from attnkit.runtime import to_device
from attnkit.tasks import evaluation
from attnkit.tasks import metrics as scoring
from attnkit.tasks.base import Batch, Task, TaskModel, hf_labels
from attnkit.tasks.graphs import Graph, IdsAndMask, encoder_graph
from attnkit.tasks.losses import IGNORE_INDEX, cross_entropy_sum

# the shape of a word, which every one of its subwords reads (with task.word_shapes); "none" marks special tokens
SHAPES = ("none", "lower", "title", "upper", "mixed", "digits", "uncased", "symbol")


def word_shape(word: str) -> int:
    """The index in SHAPES of `word`'s shape: how its cased letters are cased (lower, Title, UPPER, mIxed); else
    whether it has digits, letters of a script without case (Chinese), or neither."""
    cased = [c for c in word if c.isupper() or c.islower()]
    if cased:
        if not any(c.isupper() for c in cased):
            return SHAPES.index("lower")
        if not any(c.isupper() for c in cased[1:]):
            return SHAPES.index("title")
        return SHAPES.index("upper" if not any(c.islower() for c in cased) else "mixed")
    if any(c.isdigit() for c in word):
        return SHAPES.index("digits")
    return SHAPES.index("uncased" if any(c.isalpha() for c in word) else "symbol")


class Tagger(TaskModel):
    """Encoder (or decoder), dropout, and a linear layer giving tag scores at every position. With `word_shapes`
    (an encoder's), an embedding of each word's shape is added to its subwords' embeddings; it starts at zero, so
    a pretrained encoder starts as it was."""

    def __init__(self, config: ModelConfig, num_tags: int, word_shapes: bool = False) -> None:
        super().__init__(config)
        self.shapes = nn.Embedding(len(SHAPES), config.embedding_width) if word_shapes else None
        if self.shapes is not None:
            nn.init.zeros_(self.shapes.weight)
        self.dropout = Dropout(config.dropout)
        self.head = nn.Linear(config.dim, num_tags)

    def forward(self, ids: Tensor, mask: Tensor, shapes: Tensor | None = None) -> Tensor:
        # ids, mask, shapes: (batch, time) -> tag logits (batch, time, tags)
        if (shapes is None) != (self.shapes is None):
            raise ValueError("a tagger with word shapes needs them, and one without takes none")
        features = None if self.shapes is None else self.shapes(shapes)
        return self.head(self.dropout(self.states(ids, mask, features)))


class TagTask(Task):
    name = "tag"
    reads_decoders = True  # transformers' *ForTokenClassification on GPT-2, Llama, ...
    main_metric = "accuracy"
    gold_unit, gold_name = "token", "tag"

    def __init__(self, config, data, tokenizer, model_config, state=None) -> None:
        super().__init__(config, data, tokenizer, model_config, state)
        self.tags: list[str] = list((state or {}).get("tags", []))
        # models saved before tag inputs had special tokens read the words' subwords alone
        self.specials = "both" if state is None or state.get("specials") == "both" else "none"
        if model_config.arch == "decoder":  # its tokenizer's own start token alone (Task.framed)
            self.specials = "start"

    def state(self) -> dict:
        return {"tags": self.tags, "specials": self.specials}

    @classmethod
    def of_head(cls, head: str, hf: dict) -> dict | None:
        """A token classifier (transformers' *ForTokenClassification): a tag per word, read at its first subword."""
        return {"tags": hf_labels(hf), "specials": "both"} if head == "token" else None

    @property
    def output_names(self) -> list[str]:
        return self.tags

    @property
    def max_input_tokens(self) -> int | None:
        """The learned-position table, or None when positions extrapolate to any length: a longer sentence is
        read in windows (see `decode`), every word tagged."""
        config = self.model_config
        return config.position_limit

    def count_tokens(self, raw: list) -> list[int]:
        """The subwords of each text's words, with the special tokens around them."""
        return [len(item["ids"]) for item in self.encode(self.inputs(raw), training=False)]

    @staticmethod
    def stream(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Iterator[Tagged]:
        return read_tagged(path, need_targets, data.words_column, data.tags_column)

    def example(self, text: str, line: int) -> Tagged:
        return Tagged(text.split(), [], line)

    def fit(self, examples: list[Tagged]) -> None:
        counts = Counter(tag for e in examples for tag in e.tags)
        self.tags = [tag for tag, _ in counts.most_common()]
        if len(self.tags) < 2:
            raise AttnkitError(f"need at least two tags, found {self.tags}")

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
        """Training keeps the first max_length tokens; evaluation and prediction keep every word."""
        index = {tag: i for i, tag in enumerate(self.tags)}
        keep = self.data.max_length - sum(self._around())
        items = []
        for e, (ids, starts) in zip(examples, self.tokenizer.encode_words_batch([e.words for e in examples])):
            # a tag never seen, or none given (prediction): nothing to learn
            labels = [index.get(tag, IGNORE_INDEX) for tag in e.tags or [None] * len(e.words)]
            shapes = [word_shape(word) for word in e.words]
            items.append(self._item(ids[:keep] if training else ids, starts, labels, shapes))
        return items

    def _around(self) -> tuple[int, int]:
        """How many special tokens come before and after a sentence's subwords."""
        if self.specials == "none":
            return 0, 0
        if self.specials == "start":
            return len(self.tokenizer.prompt_start), 0
        return int(self.tokenizer.bos_id is not None), 1

    def _item(self, ids: list[int], starts: list[int], word_labels: list[int], word_shapes: list[int]) -> dict:
        """The model's input for a sentence's subwords `ids`, whose words begin at `starts` and are labelled
        `word_labels` and shaped `word_shapes`: with the special tokens this model reads around them."""
        labels, shapes = [IGNORE_INDEX] * len(ids), [0] * len(ids)
        for start, end, label, shape in zip(starts, [*starts[1:], len(ids)], word_labels, word_shapes):
            if start < len(ids):
                labels[start] = label
                shapes[start:end] = [shape] * (min(end, len(ids)) - start)
        before, after = self._around()
        if before or after:
            ids = self.framed(ids)
            labels = [IGNORE_INDEX] * before + labels + [IGNORE_INDEX] * after
            shapes = [0] * before + shapes + [0] * after
            starts = [start + before for start in starts]
        return {"ids": ids, "labels": labels, "starts": starts, "shapes": shapes}

    def collate(self, items: list[dict]) -> Batch:
        ids, mask = pad([item["ids"] for item in items], self.tokenizer.pad_id)
        labels, _ = pad([item["labels"] for item in items], IGNORE_INDEX)
        starts, start_mask = pad([item["starts"] for item in items], 0)
        batch = {"ids": ids, "mask": mask, "labels": labels, "starts": starts, "start_mask": start_mask}
        if self.config.word_shapes:
            batch["shapes"] = pad([item["shapes"] for item in items], 0)[0]
        return batch

    def build_model(self) -> Tagger:
        if self.config.word_shapes and self.model_config.arch == "decoder":
            raise AttnkitError("task.word_shapes: a decoder reads tokens alone; start from an encoder for word shapes")
        return Tagger(self.model_config, len(self.tags), self.config.word_shapes)

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        """Tag logits (batch, time, tags) for a collated batch."""
        return model(batch["ids"], batch["mask"], batch.get("shapes"))

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """Scored at each word's first subword (the other positions hold IGNORE_INDEX)."""
        logits, labels = self.forward(model, batch).flatten(0, 1), batch["labels"].flatten()
        total = cross_entropy_sum(logits, labels, label_smoothing)
        return total, (labels != IGNORE_INDEX).sum()

    ensembles = True

    def outputs(self, model: nn.Module, batch: Batch) -> list[Tensor]:
        """Each sentence's probabilities (words, tags), read at each word's first subword. A sentence longer than
        the learned positions is read in consecutive windows that fit."""
        config = self.model_config
        limit = config.position_limit
        if limit is None or batch["ids"].shape[1] <= limit:
            return self._word_probabilities(model, batch)
        pieces, owners, (before, after) = [], [], self._around()
        shapes = batch["shapes"] if "shapes" in batch else torch.zeros_like(batch["ids"])
        for row, (ids, mask, starts, start_mask) in enumerate(
            zip(batch["ids"], batch["mask"], batch["starts"], batch["start_mask"])
        ):
            ids, starts = ids[mask].tolist(), starts[start_mask].tolist()
            word_shapes = shapes[row, starts].tolist()
            ids, starts = ids[before : len(ids) - after], [start - before for start in starts]  # the words' subwords
            for first, last, begin, end in windows(starts, len(ids), limit - before - after):
                local = [start - begin for start in starts[first:last]]
                unlabelled = [IGNORE_INDEX] * len(local)
                pieces.append(self._item(ids[begin:end], local, unlabelled, word_shapes[first:last]))
                owners.append(row)
        joined: list[list[Tensor]] = [[] for _ in batch["ids"]]
        windowed = self._word_probabilities(model, to_device(self.collate(pieces), batch["ids"].device))
        for row, probabilities in zip(owners, windowed):
            joined[row].append(probabilities)
        return [torch.cat(parts) for parts in joined]

    def _word_probabilities(self, model: nn.Module, batch: Batch) -> list[Tensor]:
        scores = self.forward(model, batch)
        require_finite(scores[batch["mask"]])
        probabilities = scores.float().softmax(-1)  # (batch, time, tags)
        starts = batch["starts"].unsqueeze(-1).expand(-1, -1, probabilities.shape[-1])
        words = torch.gather(probabilities, 1, starts)  # at each word's first subword
        return [row[keep] for row, keep in zip(words, batch["start_mask"])]

    def prediction(self, output: Tensor) -> list[str]:
        return [self.tags[int(best)] for best in output.argmax(-1)]

    def metrics(self, predictions: list[list[str]], examples: list[Tagged]) -> dict:
        return scoring.tagging(predictions, [e.tags for e in examples])

    def examine(self, metrics: dict, examples: list[Tagged], predictions: list) -> list[Finding]:
        return evaluation.tagged([(e.line, e.words, e.tags, p or []) for e, p in zip(examples, predictions)])

    def render(self, prediction: list[str]) -> str:
        return " ".join(prediction)

    def record(self, example: Tagged, prediction: list[str]) -> dict:
        return {"words": example.words, "tags": prediction}

    def hf_export(self, model: nn.Module) -> TaskExport:
        refused = "a tagger trained with task.word_shapes reads word shapes" if self.config.word_shapes else None
        return TaskExport(
            model, self.name, head="token", specials=self.exported_specials, labels=list(self.tags), refused=refused
        )

    def onnx_graphs(self, model: nn.Module) -> tuple[list[Graph], dict]:
        if self.config.word_shapes:
            raise AttnkitError("a tagger trained with task.word_shapes reads word shapes; no ONNX export for it")
        vocab, pad_id = self.tokenizer.vocab_size, self.tokenizer.pad_id
        meaning = "logits (batch, time, tags)"
        return [encoder_graph(IdsAndMask(model), vocab, pad_id, "logits", meaning, per_token=True)], {"tags": self.tags}


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
