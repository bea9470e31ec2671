"""N->1: one label per text, from the pooled encoder states."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit.config import DataConfig, ModelConfig
from attnkit.data.batching import pad
from attnkit.data.readers import Labelled, read_labelled
from attnkit.errors import AttnkitError, require_finite
from attnkit.findings import Finding
from attnkit.interop.hf import FAMILIES, TaskExport, is_hf_directory, read_hf_pooler
from attnkit.nn.dropout import Dropout
from attnkit.tasks import evaluation
from attnkit.tasks import metrics as scoring
from attnkit.tasks.base import Batch, Task, TaskModel, hf_labels
from attnkit.tasks.graphs import Graph, IdsAndMask, encoder_graph
from attnkit.tasks.losses import IGNORE_INDEX, cross_entropy_sum


def default_pooling(config: ModelConfig) -> str:
    """The architecture's own pooling: what its Hugging Face family's sequence classifier computes (BERT's pooler
    for a BERT-shaped model; a decoder's last token), else the mean."""
    family = FAMILIES.get(config.preset or "")
    head = family.heads.get("sequence") if family is not None else None
    if head is not None and head.pooling:
        return head.pooling
    return "last" if config.arch == "decoder" else "mean"


# a pooler: the first token through a dense layer and this activation (BERT, RoBERTa, MPNet: tanh; DistilBERT:
# ReLU; ELECTRA: GELU)
POOLER_ACTIVATIONS = {"pooler": torch.tanh, "pooler_relu": F.relu, "pooler_gelu": F.gelu}


class Classifier(TaskModel):
    """Encoder or decoder, pooling over the real tokens (their mean or maximum, the first token <s>, the last one,
    or a pooler: the first token through a dense layer and an activation), dropout, a linear layer (without a bias
    on a decoder, as transformers' decoder classifiers have it)."""

    def __init__(self, config: ModelConfig, num_labels: int, pooling: str) -> None:
        super().__init__(config)
        if self.decoder is not None and (pooling == "first" or pooling in POOLER_ACTIVATIONS):
            raise AttnkitError(
                f"task.pooling={pooling}: a decoder's first state has read its first token alone; a decoder's states "
                "pool as mean, max or last (its own)"
            )
        self.pooling = pooling
        self.pooler = nn.Linear(config.dim, config.dim) if pooling in POOLER_ACTIVATIONS else None
        self.dropout = Dropout(config.dropout)
        self.head = nn.Linear(config.dim, num_labels, bias=self.decoder is None)

    def forward(self, ids: Tensor, mask: Tensor, segments: Tensor | None = None) -> Tensor:
        # ids, mask, segments: (batch, time) -> logits (batch, labels)
        reads_first = self.pooler is not None or self.pooling == "first"
        hidden = self.states(ids, mask, segments=segments, first_only=reads_first)
        if self.pooler is not None:
            pooled = POOLER_ACTIVATIONS[self.pooling](self.pooler(hidden[:, 0]))
        else:
            pooled = pool(hidden, mask, self.pooling)
        return self.head(self.dropout(pooled))


def pool(hidden: Tensor, mask: Tensor, pooling: str) -> Tensor:
    """One vector per sequence (batch, dim) of states (batch, time, dim) over their real tokens (mask): their mean
    or maximum, the first, or the last real one (padding comes after it)."""
    if pooling == "first":
        return hidden[:, 0]
    if pooling == "last":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), mask.sum(1) - 1]
    if pooling == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1)


def copy_pooler(model: Classifier, source: nn.Module, where: str, trust_pickle: bool = False) -> None:
    """The pooler of the checkpoint `source` read from `where`, into a classifier that pools with one (when the
    checkpoint has it: a classifier of its own, or a Hugging Face model with a pooler: BERT, RoBERTa, MPNet)."""
    if model.pooler is None:
        return
    if getattr(source, "pooler", None) is not None:
        model.pooler.load_state_dict(source.pooler.state_dict())
    elif is_hf_directory(where) and (pooler := read_hf_pooler(where, trust_pickle)) is not None:
        model.pooler.load_state_dict(pooler)


class ClassifyTask(Task):
    name = "classify"
    reads_decoders = True  # transformers' *ForSequenceClassification on GPT-2, Llama, ...
    main_metric = "accuracy"

    def __init__(self, config, data, tokenizer, model_config, state=None) -> None:
        super().__init__(config, data, tokenizer, model_config, state)
        self.labels: list[str] = list((state or {}).get("labels", []))

    def state(self) -> dict:
        return {"labels": self.labels}

    @classmethod
    def of_head(cls, head: str, hf: dict) -> dict | None:
        """A sequence classifier of labels (transformers' *ForSequenceClassification that is no regression)."""
        labels = hf_labels(hf)
        regression = hf.get("problem_type") == "regression" or len(labels) == 1
        return {"labels": labels} if head == "sequence" and not regression and cls.name == "classify" else None

    @property
    def output_names(self) -> list[str]:
        return self.labels

    @property
    def pooling(self) -> str:
        return self.config.pooling or default_pooling(self.model_config)

    @property
    def columns(self) -> str:
        return f"{self.data.text_column} -> {self.data.label_column}"

    @staticmethod
    def stream(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Iterator[Labelled]:
        settings = ("data.text_column", "data.label_column")
        return read_labelled(path, data.text_column, data.label_column, need_targets, settings)

    def example(self, text: str, line: int) -> Labelled:
        return Labelled(text, "", line)

    def fit(self, examples: list) -> None:
        self.labels = sorted({e.label for e in examples})
        if len(self.labels) < 2:
            raise AttnkitError(f"need at least two labels, found {self.labels}")

    def check(self, examples: list, path: str | os.PathLike) -> None:
        known = set(self.labels)
        for e in examples:
            if e.label and e.label not in known:
                raise AttnkitError(
                    f"{path}:{e.line}: label {e.label!r} never seen in training (known: {', '.join(self.labels)})"
                )

    def unseen(self, examples: list) -> Counter[str]:
        known = set(self.labels)
        return Counter(e.label for e in examples if e.label not in known)

    @staticmethod
    def tokenizer_texts(examples: list[Labelled]) -> Iterator[str]:
        return (e.text for e in examples)

    def encode(self, examples: list[Labelled], training: bool) -> list[dict]:
        index = {label: i for i, label in enumerate(self.labels)}
        keep, tokenizer = self.data.max_length - 2, self.tokenizer
        return [
            {"ids": self.framed(ids[:keep]), "label": index.get(e.label, IGNORE_INDEX)}
            for e, ids in zip(examples, tokenizer.encode_batch([e.text for e in examples]))
        ]

    def collate(self, items: list[dict]) -> Batch:
        ids, mask = pad([item["ids"] for item in items], self.tokenizer.pad_id)
        return {"ids": ids, "mask": mask, "labels": torch.tensor([item["label"] for item in items])}

    def build_model(self) -> Classifier:
        return Classifier(self.model_config, len(self.labels), self.pooling)

    def initialize(self, model: nn.Module, source: nn.Module, where: str, trust_pickle: bool = False) -> None:
        """The encoder, and BERT's pooler into a classifier that pools with one, when the checkpoint has it."""
        super().initialize(model, source, where, trust_pickle)
        copy_pooler(model, source, where, trust_pickle)

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        logits, labels = self.forward(model, batch), batch["labels"]
        total = cross_entropy_sum(logits, labels, label_smoothing)
        return total, (labels != IGNORE_INDEX).sum()

    ensembles = True

    def outputs(self, model: nn.Module, batch: Batch) -> list[Tensor]:
        """Each example's probabilities over the labels."""
        return list(require_finite(self.forward(model, batch).float()).softmax(-1))

    def prediction(self, output: Tensor) -> dict:
        best = int(output.argmax())
        return {"label": self.labels[best], "probability": float(output[best])}

    def metrics(self, predictions: list[dict], examples: list) -> dict:
        return scoring.classification([p["label"] for p in predictions], [e.label for e in examples], self.labels)

    def examine(self, metrics: dict, examples: list, predictions: list[dict | None]) -> list[Finding]:
        mistakes = [
            (p["probability"], e.line, self.shown(e), e.label, p["label"])
            for e, p in zip(examples, predictions)
            if p is not None and p["label"] != e.label
        ]
        return evaluation.classified(metrics, mistakes)

    def shown(self, example: Labelled) -> str:
        """An example's text, as a report shows it."""
        return example.text

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

    def caption(self, prediction: dict) -> str:
        return f"{prediction['label']} ({prediction['probability']:.2f})"

    def record(self, example: Labelled, prediction: dict | None) -> dict:
        return {"text": example.text, **(prediction or {"label": None, "probability": None})}

    def hf_export(self, model: nn.Module) -> TaskExport:
        return TaskExport(
            model,
            self.name,
            head="sequence",
            specials=self.exported_specials,
            labels=list(self.labels),
            max_length=self.data.max_length,
            config={"problem_type": "single_label_classification"},
            pooling=model.pooling,
        )

    def onnx_graphs(self, model: nn.Module) -> tuple[list[Graph], dict]:
        vocab, pad_id = self.tokenizer.vocab_size, self.tokenizer.pad_id
        graph = encoder_graph(IdsAndMask(model), vocab, pad_id, "logits", "logits (batch, labels)", per_token=False)
        return [graph], {"labels": list(self.labels)}
