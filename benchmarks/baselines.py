"""The simple baselines a user tries first, on the same splits attnkit's examples use: TF-IDF + logistic
regression (scikit-learn) for classification, and NLTK's averaged-perceptron tagger, trained on the train split,
for part-of-speech tagging. Test figures only; the one setting tuned (logistic regression's C) is chosen on dev.

  sentiment/movies, topics/bbc   TF-IDF of words and word pairs (sublinear tf), logistic regression, C in
                                 {1, 4, 16, 64} by dev accuracy; bbc also on the test articles not in train
  pos/en-oanc, pos/zh-pku        nltk.tag.PerceptronTagger(load=False), 5 iterations (its default)
  pos/tr-web                     the same, on examples/pos-tr.yaml's split (10% dev, 10% test, seed 1)

    python benchmarks/baselines.py [--data ../shared/data]     # about 5 minutes on 2 CPU cores
    python benchmarks/baselines.py --model movies=runs/sentiment-minilm --model bbc=runs/topics-minilm ...

Files are read with attnkit's own readers, as `attnkit train` reads them. With `--model DATA=DIR` (DATA one of
movies, bbc, en-oanc, zh-pku, tr-web), attnkit's model in DIR is scored on the same test examples and printed
beside the baseline. Prints a table, then one JSON line. Needs the bench extra (scikit-learn; nltk comes with
attnkit). Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from machine import machine

import attnkit
from attnkit.config import DataConfig
from attnkit.tasks.classify import ClassifyTask
from attnkit.tasks.tag import TagTask
from attnkit.training.prepare import hold_out

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def classification(data: Path, name: str, attnkit_model: Path | None) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    splits = {s: ClassifyTask.read(DataConfig(), data / f"{name}.{s}.tsv") for s in ("train", "dev", "test")}
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    train = vectorizer.fit_transform([e.text for e in splits["train"]])
    labels = [e.label for e in splits["train"]]
    best = None
    for c in (1.0, 4.0, 16.0, 64.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(train, labels)
        dev = accuracy(model.predict(vectorizer.transform([e.text for e in splits["dev"]])), splits["dev"])
        if best is None or dev > best[0]:
            best = (dev, c, model)
    dev, c, model = best
    test = splits["test"]
    seen = {e.text for e in splits["train"]}
    unseen = [e for e in test if e.text not in seen]
    parts = {"test": test} | ({f"test, the {len(unseen)} not in train": unseen} if len(unseen) < len(test) else {})
    result = {"data": name, "baseline": f"TF-IDF + logistic regression (C={c:g})", "dev": dev}
    pipeline = None if attnkit_model is None else attnkit.load(attnkit_model, device="cpu")
    for part, examples in parts.items():  # bbc: some test texts also occur in train
        result[part] = accuracy(model.predict(vectorizer.transform([e.text for e in examples])), examples)
        if pipeline is not None:
            result[f"attnkit {part}"] = attnkit_accuracy(pipeline, examples)
    return result


def accuracy(predicted, examples) -> float:
    return sum(p == e.label for p, e in zip(predicted, examples)) / len(examples)


def tagging(data: Path, name: str, attnkit_model: Path | None) -> dict:
    from nltk.tag.perceptron import PerceptronTagger

    if name == "tr-web":
        held = hold_out(TagTask.read(DataConfig(), data / "tr-web.conllu"), 0.1, 0.1, seed=1)
        splits = {s: held[s] for s in ("train", "dev", "test")}
    else:
        splits = {s: TagTask.read(DataConfig(), data / f"{name}.{s}.conll") for s in ("train", "dev", "test")}
    tagger = PerceptronTagger(load=False)
    tagger.train([list(zip(e.words, e.tags)) for e in splits["train"]])
    result = {"data": name, "baseline": "NLTK averaged perceptron"}
    for split in ("dev", "test"):
        right = total = 0
        for example in splits[split]:
            predicted = [tag for _, tag in tagger.tag(example.words)]
            right += sum(p == g for p, g in zip(predicted, example.tags))
            total += len(example.tags)
        result[split] = right / total
    if attnkit_model is not None:
        result["attnkit test"] = attnkit_accuracy(attnkit.load(attnkit_model, device="cpu"), splits["test"])
    return result


def attnkit_accuracy(pipeline: attnkit.Pipeline, examples: list) -> float:
    """The accuracy of attnkit's model on `examples` (word accuracy for a tagger)."""
    return pipeline.task.metrics(pipeline.predict_examples(examples), examples)["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help=f"the shared data folder (default {DATA})")
    parser.add_argument(
        "--model", action="append", default=[], metavar="DATA=DIR", help="also score attnkit's model DIR on DATA"
    )
    args = parser.parse_args()
    runs = {
        "movies": (classification, args.data / "sentiment"),
        "bbc": (classification, args.data / "topics"),
        "en-oanc": (tagging, args.data / "pos"),
        "zh-pku": (tagging, args.data / "pos"),
        "tr-web": (tagging, args.data / "pos"),
    }
    models = dict(given.split("=", 1) for given in args.model)
    if unknown := set(models) - set(runs):
        parser.error(f"--model: no data set {', '.join(sorted(unknown))} (one of {', '.join(runs)})")
    results = []
    for name, (run, folder) in runs.items():
        began = time.perf_counter()
        model = Path(models[name]) if name in models else None
        results.append({**run(folder, name, model), "seconds": round(time.perf_counter() - began, 1)})
    print(json.dumps(machine()))
    print(f"{'data':<9} {'baseline':<45} {'dev':>7} {'test':>7}  other")
    for r in results:
        other = "  ".join(f"{k} {v:.1%}" for k, v in r.items() if k.startswith(("test, ", "attnkit")))
        print(f"{r['data']:<9} {r['baseline']:<45} {r['dev']:>7.1%} {r['test']:>7.1%}  {other}")
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
