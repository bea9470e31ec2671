"""A trained checkpoint as something that predicts and evaluates: `attnkit.load(path).predict(texts)`."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from attnkit.checkpoint import load_weights, read_checkpoint_json
from attnkit.config import RunConfig, from_dict
from attnkit.data.batching import batches_by_tokens
from attnkit.errors import AttnkitError
from attnkit.tasks import Task, make_task
from attnkit.tokenization import Tokenizer


class Pipeline:
    """Task + model + tokenizer, as saved by `attnkit train`."""

    def __init__(self, task: Task, model: nn.Module, tokenizer: Tokenizer, run: RunConfig) -> None:
        self.task = task
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.run = run

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pipeline:
        path = Path(path)
        run, state = read_run(path)
        task = make_task(run.task, run.data, state)
        model = task.build_model(run.model)
        load_weights(model, path / "model.safetensors")
        return cls(task, model, Tokenizer.load(path), run)

    def predict(self, texts: list[str]) -> list:
        """One prediction per input text: classify gives {"label", "probability"}; tag, a tag per
        whitespace-separated word; seq2seq, the output text."""
        return self.predict_examples(self.task.inputs(texts))

    def predict_examples(self, examples: list) -> list:
        items = self.task.encode(examples, self.tokenizer, training=False)
        return predict_items(self.task, self.model, self.tokenizer, items, self.run.train.batch_tokens)

    def evaluate(self, path: str | os.PathLike) -> tuple[dict, list, list]:
        """Metrics on a labelled file, with its examples and the predictions."""
        examples = self.task.read(path)
        self.task.check(examples, path)
        predictions = self.predict_examples(examples)
        return self.task.metrics(predictions, examples), examples, predictions


def read_run(path: Path) -> tuple[RunConfig, dict]:
    """The run configuration and task state saved in a trained checkpoint's config.json."""
    data = read_checkpoint_json(path)
    where = str(path / "config.json")
    if "task" not in data:
        raise AttnkitError(f"{where}: a bare model without a task; train one with `attnkit train`")
    sections = {key: data[key] for key in ("task", "out", "data", "tokenizer", "model", "train") if key in data}
    return from_dict(RunConfig, sections, where), data.get("task_state", {})


@torch.no_grad()
def predict_items(task: Task, model: nn.Module, tokenizer: Tokenizer, items: list[dict], batch_tokens: int) -> list:
    """Predictions for encoded items, in their order, batched by length for speed."""
    was_training = model.training
    model.eval()
    predictions: list = [None] * len(items)
    for indices in batches_by_tokens([task.size(item) for item in items], batch_tokens, shuffle=False):
        for index, prediction in zip(indices, task.decode(model, task.collate([items[i] for i in indices]), tokenizer)):
            predictions[index] = prediction
    model.train(was_training)
    return predictions


def load(path: str | os.PathLike) -> Pipeline:
    """The trained model at `path`, ready to predict: `attnkit.load("runs/sentiment").predict(["Great fun."])`."""
    return Pipeline.load(path)
