"""What every task shape provides to the trainer and the pipeline. The trainer knows nothing about labels,
tags or targets: it asks the task to read, encode, collate, compute the loss, decode and score."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence

from torch import Tensor, nn

from attnkit.config import DataConfig, ModelConfig, TaskConfig
from attnkit.data.batching import Size
from attnkit.tokenization import Tokenizer

Batch = dict[str, Tensor]
IGNORE_INDEX = -100  # a target position without anything to learn (padding, a later subword): cross_entropy skips it


class Task:
    """A task shape, made once its tokenizer and model configuration exist. `state` holds what was learned from
    the training data (the label set), saved in config.json so that a loaded checkpoint decodes the same way.
    Reading data and the tokenizer's training texts need no task (`TASKS[name].read(data, path)`): a new run reads
    its training examples before the tokenizer they train exists."""

    name = ""
    main_metric = ""
    gold_unit, gold_name = "example", "label"  # what carries a gold label, and what one is called (for warnings)
    lower_is_better: frozenset[str] = frozenset()
    specials = "both"  # special tokens around an input: both (<s> text </s>), end (text </s>) or none

    def __init__(
        self,
        config: TaskConfig,
        data: DataConfig,
        tokenizer: Tokenizer,
        model_config: ModelConfig,
        state: dict | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.tokenizer = tokenizer
        self.model_config = model_config

    @property
    def metric(self) -> str:
        """The dev metric that picks the best checkpoint (see `better`)."""
        return self.config.metric or self.main_metric

    def better(self, value: float, best: float) -> bool:
        """Whether `value` of the task's metric improves on `best`."""
        return value < best if self.metric in self.lower_is_better else value > best

    def state(self) -> dict:
        return {}

    # data
    @staticmethod
    def read(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Sequence:
        """The examples of a data file, read as `data` says (its columns, its block length)."""
        raise NotImplementedError

    def inputs(self, texts: list[str]) -> list:
        """Examples for prediction from raw input lines."""
        raise NotImplementedError

    def fit(self, examples: list) -> None:
        """Learn what the training data decides (labels); the default learns nothing."""

    def check(self, examples: list, path: str | os.PathLike) -> None:
        """Refuse dev or test data of a training run whose labels the training data lacks (a label never seen)."""

    def unseen(self, examples: list) -> Counter[str]:
        """Gold labels the model never saw, each with how many examples (or tokens) carry it: evaluation counts
        them as errors, since no prediction can match them."""
        return Counter()

    @staticmethod
    def tokenizer_texts(examples: list) -> Iterator[str]:
        """The texts a new tokenizer learns its vocabulary from."""
        raise NotImplementedError

    def encode(self, examples: list, training: bool) -> list[dict]:
        raise NotImplementedError

    def size(self, item: dict) -> Size:
        """Tokens of one encoded example, for batching by token budget; a tuple where a batch pads more than one
        tensor (see batches_by_tokens)."""
        raise NotImplementedError

    def sizes(self, items: Sequence[dict]) -> list[Size]:
        return [self.size(item) for item in items]

    def collate(self, items: list[dict]) -> Batch:
        """One batch of encoded items, token ids padded with the tokenizer's padding id."""
        raise NotImplementedError

    # model
    def build_model(self) -> nn.Module:
        """A new model of the task's model_config (freshly initialized)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """The summed loss over the batch's targets and their count: the trainer divides the sum over a whole
        step (all accumulated batches, all processes) by the count over it, so that how a step's examples are
        split into batches or among processes does not change its gradient."""
        raise NotImplementedError

    def decode(self, model: nn.Module, batch: Batch) -> list:
        raise NotImplementedError

    def metrics(self, predictions: list, examples: list) -> dict[str, float]:
        raise NotImplementedError

    def report(self, metrics: dict) -> str:
        """A human-readable summary of `metrics` (tables for evaluate)."""
        return "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))

    def render(self, prediction: object) -> str:
        """One prediction as a line of `attnkit predict` output."""
        raise NotImplementedError

    def record(self, example: object, prediction: object) -> dict:
        """One prediction as a JSON object (`attnkit predict --json`)."""
        raise NotImplementedError
