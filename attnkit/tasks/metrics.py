"""Scores, as thin wrappers over the libraries people report with: sacrebleu (BLEU, chrF), seqeval (entity
spans), rouge-score (ROUGE-L). Accuracy, F1, the confusion matrix and the correlations of a regression are a few
lines of numpy (scipy, which has the last, is not worth a dependency for them)."""

from __future__ import annotations

import re

import numpy as np


def classification(predicted: list[str], gold: list[str], labels: list[str]) -> dict:
    """accuracy, macro_f1, per-class precision/recall/f1/support, and the confusion matrix (rows: gold). A gold
    label outside `labels` (never seen in training) counts as an error: it gets F1 0 in the macro average, and its
    row of the confusion matrix goes under "unseen"."""
    unseen = sorted(set(gold) - set(labels))
    index = {label: i for i, label in enumerate(labels + unseen)}
    counts = np.zeros((len(index), len(labels)), dtype=np.int64)  # rows: every gold label; columns: predictions
    for p, g in zip(predicted, gold):
        counts[index[g], index[p]] += 1
    confusion = counts[: len(labels)]
    true_positive = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1)
    predicted_count = counts.sum(axis=0)
    precision = np.divide(true_positive, predicted_count, out=np.zeros(len(labels)), where=predicted_count > 0)
    recall = np.divide(true_positive, support, out=np.zeros(len(labels)), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(labels)), where=precision + recall > 0)
    present = support > 0
    classes = int(present.sum()) + len(unseen)  # every gold label that occurs; the unseen ones score F1 0
    result = {
        "accuracy": float(true_positive.sum() / max(len(gold), 1)),
        "macro_f1": float(f1[present].sum() / classes) if classes else 0.0,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": {"labels": labels, "matrix": confusion.tolist()},
    }
    if unseen:
        result["confusion"]["unseen"] = {label: counts[index[label]].tolist() for label in unseen}
    return result


BIO = re.compile(r"^(O|[BIES]-.+)$")


def tagging(predicted: list[list[str]], gold: list[list[str]]) -> dict:
    """Word-level accuracy; for BIO/BIOES tags also seqeval's span precision, recall and F1."""
    total = sum(len(g) for g in gold)
    correct = sum(p == g for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs))
    result: dict = {"accuracy": correct / max(total, 1)}
    if all(BIO.match(tag) for tags in gold for tag in tags):
        from seqeval.metrics import f1_score, precision_score, recall_score

        result.update(
            span_precision=float(precision_score(gold, predicted)),
            span_recall=float(recall_score(gold, predicted)),
            span_f1=float(f1_score(gold, predicted)),
        )
    return result


def generation(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus sacreBLEU and chrF (standard signatures), and mean ROUGE-L F1 (rouge-score, with stemming)."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)]
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "rougeL": 100 * float(np.mean(rouge)) if rouge else 0.0,
    }


def regression(predicted: list[float], gold: list[float]) -> dict:
    """Pearson's and Spearman's correlations of the predictions with the gold numbers (0 where either is
    constant), and the root-mean-squared and mean absolute errors, in the gold numbers' units."""
    p, g = np.asarray(predicted, dtype=float), np.asarray(gold, dtype=float)
    error = p - g
    return {
        "pearson": _pearson(p, g),
        "spearman": _pearson(_ranks(p), _ranks(g)),
        "rmse": float(np.sqrt(np.mean(error**2))) if len(g) else 0.0,
        "mae": float(np.mean(np.abs(error))) if len(g) else 0.0,
    }


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing the mean of the ranks they span (as scipy.stats.rankdata does by default)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]
