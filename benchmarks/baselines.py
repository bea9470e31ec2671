"""The simple baselines a user tries first, on the same splits attnkit's examples use: TF-IDF + logistic
regression (scikit-learn) for classification, and NLTK's averaged-perceptron tagger, trained on the train split,
for part-of-speech tagging. Test figures only; the one setting tuned (logistic regression's C) is chosen on dev.

  sentiment/movies, topics/bbc   TF-IDF of words and word pairs (sublinear tf), logistic regression, C in
                                 {1, 4, 16, 64} by dev accuracy; bbc also on the test articles not in train
  pos/en-oanc, pos/zh-pku        nltk.tag.PerceptronTagger(load=False), 5 iterations (its default)
  pos/tr-web                     the same, on examples/pos-tr.yaml's split (10% dev, 10% test, seed 1)

    python benchmarks/baselines.py [--data ../shared/data]     # about 3 minutes on 2 CPU cores

Files are read with attnkit's own readers, as `attnkit train` reads them. Prints a table, then one JSON line.
Needs the bench extra (scikit-learn; nltk comes with attnkit). Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from machine import machine

from attnkit.config import DataConfig
from attnkit.prepare import hold_out
from attnkit.tasks.classify import ClassifyTask
from attnkit.tasks.tag import TagTask

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def classification(data: Path, name: str) -> dict:
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
    result = {"data": name, "baseline": f"TF-IDF + logistic regression (C={c:g})", "dev": dev}
    result["test"] = accuracy(model.predict(vectorizer.transform([e.text for e in test])), test)
    seen = {e.text for e in splits["train"]}
    unseen = [e for e in test if e.text not in seen]
    if len(unseen) < len(test):  # test texts that also occur in train (bbc has some)
        result[f"test, the {len(unseen)} not in train"] = accuracy(
            model.predict(vectorizer.transform([e.text for e in unseen])), unseen
        )
    return result


def accuracy(predicted, examples) -> float:
    return sum(p == e.label for p, e in zip(predicted, examples)) / len(examples)


def tagging(data: Path, name: str) -> dict:
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
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help=f"the shared data folder (default {DATA})")
    args = parser.parse_args()
    runs = [
        (classification, args.data / "sentiment", "movies"),
        (classification, args.data / "topics", "bbc"),
        (tagging, args.data / "pos", "en-oanc"),
        (tagging, args.data / "pos", "zh-pku"),
        (tagging, args.data / "pos", "tr-web"),
    ]
    results = []
    for run, folder, name in runs:
        began = time.perf_counter()
        results.append({**run(folder, name), "seconds": round(time.perf_counter() - began, 1)})
    print(json.dumps(machine()))
    print(f"{'data':<9} {'baseline':<45} {'dev':>7} {'test':>7}  other")
    for r in results:
        other = "  ".join(f"{k} {v:.1%}" for k, v in r.items() if k.startswith("test, "))
        print(f"{r['data']:<9} {r['baseline']:<45} {r['dev']:>7.1%} {r['test']:>7.1%}  {other}")
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
