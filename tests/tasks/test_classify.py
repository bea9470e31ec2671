"""Classification: pooling over real tokens only, and labels from the training data."""

import pytest
import torch

from attnkit.config import DataConfig, ModelConfig, TaskConfig, TokenizerConfig
from attnkit.data.readers import Labelled
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.tasks.classify import Classifier, ClassifyTask
from tests.numerics import assert_close


def classify_task(state: dict | None = None) -> ClassifyTask:
    tokenizer = Tokenizer.train(["a b c d"], TokenizerConfig(kind="word", vocab_size=20, min_frequency=1))
    return ClassifyTask(TaskConfig(), DataConfig(), tokenizer, ModelConfig(vocab_size=tokenizer.vocab_size), state)


@pytest.mark.parametrize("pooling", ["mean", "max", "first"])
def test_padding_does_not_change_the_prediction(pooling):
    torch.manual_seed(0)
    model = Classifier(ModelConfig(vocab_size=30, dim=16, num_heads=2, ff_dim=32, num_layers=1), 3, pooling).eval()
    ids = torch.tensor([[2, 7, 8, 3]])
    padded = torch.tensor([[2, 7, 8, 3, 0, 0, 0]])
    mask = padded != 0
    assert_close(model(padded, mask), model(ids, torch.ones_like(ids, dtype=torch.bool)))


def test_labels_come_from_training_and_unknown_ones_are_refused():
    task = classify_task()
    task.fit([Labelled("a", "pos", 2), Labelled("b", "neg", 3)])
    assert task.labels == ["neg", "pos"]
    with pytest.raises(AttnkitError, match=r"dev.tsv:7: label 'neutral' never seen in training \(known: neg, pos\)"):
        task.check([Labelled("c", "neutral", 7)], "dev.tsv")
    with pytest.raises(AttnkitError, match="need at least two labels"):
        task.fit([Labelled("a", "pos", 2)])


def test_evaluation_counts_unseen_labels_instead_of_refusing_them():
    task = classify_task({"labels": ["neg", "pos"]})
    examples = [Labelled("a", "pos", 2), Labelled("b", "meh", 3), Labelled("c", "meh", 4), Labelled("d", "wow", 5)]
    assert task.unseen(examples) == {"meh": 2, "wow": 1}


def test_a_blank_input_records_a_null_prediction():
    task = classify_task({"labels": ["neg", "pos"]})
    assert task.record(Labelled("", "", 1), None) == {"text": "", "label": None, "probability": None}
