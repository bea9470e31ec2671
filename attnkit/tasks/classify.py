"""N->1: one label per text, from the pooled encoder states."""

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
from attnkit.data.readers import Labelled, read_labelled
from attnkit.errors import AttnkitError, require_finite
from attnkit.nn import Encoder
from attnkit.nn.dropout import Dropout
from attnkit.tasks.base import IGNORE_INDEX, Batch, Task


def default_pooling(config: ModelConfig) -> str:
    """The architecture's own pooling: BERT's pooler for a BERT-shaped model, else the mean."""
    return "pooler" if config.preset == "bert" else "mean"


class Classifier(nn.Module):
    """Encoder, pooling over the real tokens (their mean or maximum, the first token <s>, or BERT's pooler: the
    first token through a dense layer and tanh), dropout, a linear layer."""

    def __init__(self, config: ModelConfig, num_labels: int, pooling: str) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.pooling = pooling
        self.pooler = nn.Linear(config.dim, config.dim) if pooling == "pooler" else None
        self.dropout = Dropout(config.dropout)
        self.head = nn.Linear(config.dim, num_labels)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        # ids, mask: (batch, time) -> logits (batch, labels)
        hidden = self.encoder(ids, mask)
        if self.pooler is not None:
            pooled = torch.tanh(self.pooler(hidden[:, 0]))
        elif self.pooling == "first":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1)
        return self.head(self.dropout(pooled))


class ClassifyTask(Task):
    name = "classify"
    main_metric = "accuracy"

    def __init__(self, config, data, tokenizer, model_config, state=None) -> None:
        super().__init__(config, data, tokenizer, model_config, state)
        self.labels: list[str] = list((state or {}).get("labels", []))

    def state(self) -> dict:
        return {"labels": self.labels}

    @staticmethod
    def read(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> list[Labelled]:
        settings = ("data.text_column", "data.label_column")
        return read_labelled(path, data.text_column, data.label_column, need_targets, settings)

    def inputs(self, texts: list[str]) -> list[Labelled]:
        return [Labelled(text, "", i + 1) for i, text in enumerate(texts)]

    def fit(self, examples: list[Labelled]) -> None:
        self.labels = sorted({e.label for e in examples})
        if len(self.labels) < 2:
            raise AttnkitError(f"need at least two labels, found {self.labels}")

    def check(self, examples: list[Labelled], path: str | os.PathLike) -> None:
        known = set(self.labels)
        for e in examples:
            if e.label and e.label not in known:
                raise AttnkitError(
                    f"{path}:{e.line}: label {e.label!r} never seen in training (known: {', '.join(self.labels)})"
                )

    def unseen(self, examples: list[Labelled]) -> Counter[str]:
        known = set(self.labels)
        return Counter(e.label for e in examples if e.label not in known)

    @staticmethod
    def tokenizer_texts(examples: list[Labelled]) -> Iterator[str]:
        return (e.text for e in examples)

    def encode(self, examples: list[Labelled], training: bool) -> list[dict]:
        index = {label: i for i, label in enumerate(self.labels)}
        keep, tokenizer = self.data.max_length - 2, self.tokenizer
        return [
            {"ids": tokenizer.add_specials(ids[:keep]), "label": index.get(e.label, IGNORE_INDEX)}
            for e, ids in zip(examples, tokenizer.encode_batch([e.text for e in examples]))
        ]

    def size(self, item: dict) -> int:
        return len(item["ids"])

    def collate(self, items: list[dict]) -> Batch:
        ids, mask = pad([item["ids"] for item in items], self.tokenizer.pad_id)
        return {"ids": ids, "mask": mask, "labels": torch.tensor([item["label"] for item in items])}

    def build_model(self) -> Classifier:
        config = self.model_config
        return Classifier(config, len(self.labels), self.config.pooling or default_pooling(config))

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        logits, labels = model(batch["ids"], batch["mask"]), batch["labels"]
        total = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction="sum")
        return total, (labels != IGNORE_INDEX).sum()

    def decode(self, model: nn.Module, batch: Batch) -> list[dict]:
        probabilities = require_finite(model(batch["ids"], batch["mask"]).float()).softmax(-1)
        best = probabilities.argmax(-1)
        return [{"label": self.labels[int(b)], "probability": float(p[b])} for b, p in zip(best, probabilities)]

    def metrics(self, predictions: list[dict], examples: list[Labelled]) -> dict:
        return scoring.classification([p["label"] for p in predictions], [e.label for e in examples], self.labels)

    def report(self, result: dict) -> str:
        lines = [f"accuracy {result['accuracy']:.4f}   macro-F1 {result['macro_f1']:.4f}", ""]
        unseen = result["confusion"].get("unseen", {})
        width = max(8, *(len(label) for label in [*self.labels, *unseen]))
        lines.append(f"{'label':<{width}} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}")
        for label, row in result["per_class"].items():
            lines.append(
                f"{label:<{width}} {row['precision']:>9.4f} {row['recall']:>7.4f} {row['f1']:>7.4f} {row['support']:>8}"
            )
        lines += ["", "confusion (rows: gold, columns: predicted)"]
        lines.append(" " * width + "".join(f" {label[:8]:>8}" for label in self.labels))
        for label, row in zip(self.labels, result["confusion"]["matrix"]):
            lines.append(f"{label:<{width}}" + "".join(f" {n:>8}" for n in row))
        for label, row in unseen.items():
            lines.append(f"{label:<{width}}" + "".join(f" {n:>8}" for n in row) + "   (never seen in training)")
        return "\n".join(lines)

    def render(self, prediction: dict) -> str:
        return prediction["label"]

    def record(self, example: Labelled, prediction: dict | None) -> dict:
        return {"text": example.text, **(prediction or {"label": None, "probability": None})}
