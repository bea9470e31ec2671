"""N->a number: a score for a text, or for a pair of texts (a rating, a similarity). A file with data.text_a_column
and data.text_b_column but no data.text_column holds pairs, read as the pair task reads them. The model predicts the
standardized target (mean 0 and deviation 1 over the training data) under a squared error, and its predictions are
scaled back; the dev metric is Pearson's correlation."""

from __future__ import annotations

import array
import itertools
import math
import os
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from attnkit.config import DataConfig
from attnkit.data.batching import pad
from attnkit.data.readers import Labelled, TextPair, read_labelled, table_columns
from attnkit.errors import AttnkitError, require_finite
from attnkit.findings import Finding
from attnkit.interop.hf import TaskExport
from attnkit.tasks import evaluation
from attnkit.tasks import metrics as scoring
from attnkit.tasks.base import Batch, Task, hf_labels
from attnkit.tasks.classify import Classifier, copy_pooler, default_pooling
from attnkit.tasks.graphs import Graph, IdsAndMask, IdsMaskAndSegments, encoder_graph
from attnkit.tasks.pair import (
    FIELDS,
    blank_pair,
    collate_pairs,
    encoded_pairs,
    pair_inputs,
    pair_item,
    pair_texts,
    read_pairs_of,
    shown,
)

Example = Labelled | TextPair


class Scaled(nn.Module):
    """A regressor whose output is in the targets' units: its standardized score times `std`, plus `mean`."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model, self.mean, self.std = model, mean, std

    def forward(self, *inputs: Tensor) -> Tensor:
        # ids, mask (and a pair's segments): (batch, time) -> scores (batch,)
        return self.model(*inputs).squeeze(-1) * self.std + self.mean


class RegressTask(Task):
    name = "regress"
    reads_decoders = True  # a text's (or a pair's) score from a decoder's last state
    main_metric = "pearson"
    lower_is_better = frozenset({"rmse", "mae"})
    gold_name = "score"

    def __init__(self, config, data, tokenizer, model_config, state=None) -> None:
        super().__init__(config, data, tokenizer, model_config, state)
        state = state or {}
        self.mean, self.std, self.pair = state.get("mean", 0.0), state.get("std", 1.0), state.get("pair", False)
        if not (_finite(self.mean) and _finite(self.std) and self.std > 0 and isinstance(self.pair, bool)):
            wanted = "a mean, a deviation above 0 and pair true or false"
            raise AttnkitError(f"task_state: expected {wanted}, got {state!r}")

    @classmethod
    def of_head(cls, head: str, hf: dict) -> dict | None:
        """A sequence classifier with one output, or of problem_type regression: its output is the number."""
        regression = hf.get("problem_type") == "regression" or len(hf_labels(hf)) == 1
        return {"mean": 0.0, "std": 1.0, "pair": False} if head == "sequence" and regression else None

    def state(self) -> dict:
        return {"mean": self.mean, "std": self.std, "pair": self.pair}

    @property
    def input_fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return FIELDS if self.pair else ("text",)

    @property
    def input_name(self) -> str:  # type: ignore[override]
        return "pair" if self.pair else "text"

    @property
    def columns(self) -> str:
        data = self.data
        texts = f"{data.text_a_column}, {data.text_b_column}" if self.pair else data.text_column
        return f"{texts} -> {data.label_column}"

    @staticmethod
    def stream(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Iterator[Example]:
        """Texts and their numbers, or pairs (a file with both pair columns and no text column)."""
        columns = table_columns(path)
        pairs = data.text_column not in columns and {data.text_a_column, data.text_b_column} <= set(columns)
        if pairs:
            examples: Iterator = read_pairs_of(data, path, need_targets)
        else:
            settings = ("data.text_column", "data.label_column")
            examples = read_labelled(path, data.text_column, data.label_column, need_targets, settings)
        for e in examples:
            if need_targets:
                number_in(e, path, data.label_column, columns)
            yield e

    def inputs(self, raw: list, where: str = "input") -> list[Example]:
        if self.pair:
            return pair_inputs(raw, where)
        return [Labelled(text, "", line) for line, text in enumerate(raw, start=1)]

    def blank(self, raw: object) -> bool:
        return blank_pair(raw)

    def fit(self, examples: Iterable[Example]) -> None:
        examples = iter(examples)  # read once: a training file streams through
        first = next(examples)
        targets = array.array("d", [float(first.label)])
        targets.extend(float(e.label) for e in examples)
        mean = sum(targets) / len(targets)
        std = math.sqrt(sum((t - mean) ** 2 for t in targets) / len(targets))
        if std == 0:
            raise AttnkitError(f"every one of the {len(targets)} targets is {targets[0]:g}: nothing to learn")
        self.mean, self.std, self.pair = mean, std, isinstance(first, TextPair)

    def readable(self, examples: list[Example], path: str | os.PathLike) -> None:
        if examples and isinstance(examples[0], TextPair) != self.pair:
            wanted = "pairs (text_a, text_b)" if self.pair else "single texts"
            raise AttnkitError(f"{path}: the training data holds {wanted}, and this file does not")

    @staticmethod
    def tokenizer_texts(examples: Iterable[Example]) -> Iterator[str]:
        examples = iter(examples)
        first = next(examples, None)
        if first is None:
            return iter(())
        examples = itertools.chain([first], examples)
        return pair_texts(examples) if isinstance(first, TextPair) else (e.text for e in examples)

    def count_tokens(self, raw: list) -> list[int]:
        if self.pair:
            return [len(ids) for ids, _ in encoded_pairs(self, self.inputs(raw), None)]
        return super().count_tokens(raw)

    def encode(self, examples: list[Example], training: bool) -> list[dict]:
        """Token ids (and a pair's segments) and the standardized target (NaN without one: prediction)."""
        targets = [(float(e.label) - self.mean) / self.std if e.label != "" else math.nan for e in examples]
        if self.pair:
            encoded = encoded_pairs(self, examples, self.data.max_length)
            return [pair_item(ids, segments, target=t) for (ids, segments), t in zip(encoded, targets)]
        keep, tokenizer = self.data.max_length - 2, self.tokenizer
        texts = tokenizer.encode_batch([e.text for e in examples])
        return [{"ids": self.framed(ids[:keep]), "target": t} for ids, t in zip(texts, targets)]

    def collate(self, items: list[dict]) -> Batch:
        if self.pair:
            batch = collate_pairs(items, self.tokenizer.pad_id)
        else:
            ids, mask = pad([item["ids"] for item in items], self.tokenizer.pad_id)
            batch = {"ids": ids, "mask": mask}
        return {**batch, "targets": torch.tensor([item["target"] for item in items], dtype=torch.float32)}

    def build_model(self) -> Classifier:
        return Classifier(self.model_config, 1, self.config.pooling or default_pooling(self.model_config))

    def initialize(self, model: nn.Module, source: nn.Module, where: str, trust_pickle: bool = False) -> None:
        """The encoder, and BERT's pooler when the regressor pools with one and the checkpoint has it."""
        super().initialize(model, source, where, trust_pickle)
        copy_pooler(model, source, where, trust_pickle)

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        """Standardized scores (batch, 1)."""
        return model(batch["ids"], batch["mask"], batch.get("segments"))

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """The squared error on standardized targets (label smoothing has no meaning here)."""
        scores, targets = self.forward(model, batch).squeeze(-1).float(), batch["targets"]
        known = targets.isfinite()
        return ((scores - targets)[known] ** 2).sum(), known.sum()

    ensembles = True

    def outputs(self, model: nn.Module, batch: Batch) -> list[Tensor]:
        """Each example's number, in the targets' units."""
        return list(require_finite(self.forward(model, batch).squeeze(-1).double()) * self.std + self.mean)

    def prediction(self, output: Tensor) -> float:
        return float(output)

    def metrics(self, predictions: list[float], examples: list[Example]) -> dict:
        return scoring.regression(predictions, [float(e.label) for e in examples])

    def examine(self, metrics: dict, examples: list[Example], predictions: list) -> list[Finding]:
        scores = [(e.line, shown(e), float(e.label), p) for e, p in zip(examples, predictions) if p is not None]
        return evaluation.regressed(scores)

    def report(self, metrics: dict) -> str:
        return "   ".join(f"{name} {metrics[name]:.4f}" for name in ("pearson", "spearman", "rmse", "mae"))

    def render(self, prediction: float) -> str:
        return f"{prediction:.6g}"

    def record(self, example: Example, prediction: float | None) -> dict:
        texts = {"text_a": example.text_a, "text_b": example.text_b} if self.pair else {"text": example.text}
        return {**texts, "score": prediction}

    def hf_export(self, model: nn.Module) -> TaskExport:
        """BERT's sequence classifier with one output, its head scaled so that it gives the targets' units (a
        decoder's head has no bias to hold their mean)."""
        head = {"head.weight": model.head.weight * self.std}
        if model.head.bias is not None:
            head["head.bias"] = model.head.bias * self.std + self.mean
        unheld = model.head.bias is None and self.mean != 0
        texts = '["A first text."], ["A second text."]' if self.pair else '["A text."]'
        column = self.data.label_column
        return TaskExport(
            model,
            self.name,
            head="sequence",
            specials=self.exported_specials,
            labels=["score"],
            max_length=self.data.max_length,
            config={"problem_type": "regression"},
            pooling=model.pooling,
            pair=self.pair,
            usage=[
                f'inputs = tokenizer({texts}, return_tensors="pt")',
                f"print(model(**inputs).logits[0, 0].item())  # the number, in the units of column {column!r}",
            ],
            head_state={name: tensor.detach() for name, tensor in head.items()},
            refused=f"a regressor on a decoder adds its targets' mean ({self.mean:g}) to its output"
            if unheld
            else None,
        )

    def onnx_graphs(self, model: nn.Module) -> tuple[list[Graph], dict]:
        scaled, meaning = Scaled(model, self.mean, self.std), "scores (batch,), in the targets' units"
        wrapped = IdsMaskAndSegments(scaled) if self.pair and self.model_config.segments else IdsAndMask(scaled)
        vocab, pad_id = self.tokenizer.vocab_size, self.tokenizer.pad_id
        return [encoder_graph(wrapped, vocab, pad_id, "scores", meaning, per_token=False)], {}


def number_in(example: Labelled | TextPair, path: str | os.PathLike, column: str, columns: list[str]) -> None:
    """Refuse an example whose target is not a number, naming the setting that picks another column where the
    file has others."""
    if _number(example.label) is not None:
        return
    others = [name for name in columns if name != column]
    hint = f"; name the column of numbers with data.label_column (this file has {', '.join(others)})" if others else ""
    raise AttnkitError(f"{path}:{example.line}: column {column!r} holds {example.label!r}, not a number{hint}")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(text: str) -> float | None:
    """`text` as a finite number, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
