"""Metrics against the reference implementations."""

import random

import numpy as np
import pytest

from attnkit.tasks import metrics


def test_classification_matches_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    labels = ["a", "b", "c", "d"]
    gold = [rng.choice(labels[:3]) for _ in range(300)]  # "d" never occurs in gold
    predicted = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
    result = metrics.classification(predicted, gold, labels)
    assert result["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(gold, predicted))
    assert result["macro_f1"] == pytest.approx(
        sklearn_metrics.f1_score(gold, predicted, labels=labels[:3], average="macro")
    )
    assert result["confusion"]["matrix"] == sklearn_metrics.confusion_matrix(gold, predicted, labels=labels).tolist()
    recall = sklearn_metrics.recall_score(gold, predicted, labels=["b"], average=None)[0]
    assert result["per_class"]["b"]["recall"] == pytest.approx(recall)


def test_tagging_accuracy_and_spans_only_for_bio():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    predicted = [["B-PER", "I-PER", "O", "O"]]
    result = metrics.tagging(predicted, gold)
    assert result["accuracy"] == 0.75
    assert result["span_precision"] == 1.0 and result["span_recall"] == 0.5
    assert "span_f1" not in metrics.tagging([["NN", "VB"]], [["NN", "NN"]])


def test_generation_scores():
    references = ["the cat sat on the mat", "a dog barked at the moon"]
    perfect = metrics.generation(references, references)
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)
    assert perfect["rougeL"] == pytest.approx(100)
    worse = metrics.generation(["the cat sat", "a dog barked at noon"], references)
    assert 0 < worse["bleu"] < 100 and 0 < worse["rougeL"] < 100


def test_classification_counts_gold_labels_outside_the_known_ones_as_errors():
    result = metrics.classification(["a", "b", "a", "b"], ["a", "b", "z", "z"], ["a", "b"])
    assert result["accuracy"] == 0.5 and result["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 3)
    assert result["confusion"] == {"labels": ["a", "b"], "matrix": [[1, 0], [0, 1]], "unseen": {"z": [1, 1]}}
    assert result["per_class"]["a"]["precision"] == 0.5 and "z" not in result["per_class"]


def test_regression_scores_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    predicted, gold = [0.1, 0.4, 0.4, 0.9, 0.3, 0.7], [0.0, 0.5, 0.2, 1.0, 0.5, 0.5]  # ties on both sides
    result = metrics.regression(predicted, gold)
    assert result["pearson"] == pytest.approx(stats.pearsonr(predicted, gold)[0])
    assert result["spearman"] == pytest.approx(stats.spearmanr(predicted, gold)[0])
    assert result["rmse"] == pytest.approx(((np.array(predicted) - gold) ** 2).mean() ** 0.5)
    assert metrics.regression([1.0, 1.0], [0.0, 2.0])["pearson"] == 0.0  # a constant prediction correlates with nothing
