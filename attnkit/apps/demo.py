"""`attnkit demo`: the Transformer story on bundled data, in six to eight minutes on two idle CPU cores.

1. pretrain a small encoder (masked LM) on 8,568 unlabelled movie-review sentences;
2. fine-tune it on 500 and 4,000 labelled reviews, and train the same model from scratch on the same examples:
   both accuracies side by side, and the learning curve as a PNG;
3. tag Turkish sentences with parts of speech (N->N), and translate Bible verses to Spanish (N->M).

Every budget is a number of steps, not minutes, so that a slower or busier machine takes longer and shows the same
figures (up to the last digit of float32 arithmetic, which another CPU may round differently). A few CPU minutes
show the workflow, not the best quality: docs/benchmarks.md has the full runs.
"""

from __future__ import annotations

import csv
import filecmp
import shutil
import time
from collections import Counter
from pathlib import Path

from attnkit.apps.plots import learning_curve
from attnkit.data.readers import read_tagged
from attnkit.inference.pipeline import Pipeline
from attnkit.training.corpus import pretrain
from attnkit.training.loop import train
from attnkit.training.run import RunConfig

DEMO_DATA = Path(__file__).parent / "demo_data"
SIZES = [500, 4000]
SMALL = {"dim": 128, "num_heads": 4, "ff_dim": 512, "num_layers": 2, "dropout": 0.1}
PRETRAIN_STEPS, TAGGING_STEPS, TRANSLATION_STEPS = 600, 400, 700
REVIEWS = ["A gorgeous, witty and deeply moving film.", "The plot is a mess and the jokes fall flat."]
TURKISH = "Bu akşam eve erken dönmek istiyorum ."
VERSES = ["And the LORD spake unto Moses, saying,", "And God said, Let there be light: and there was light."]


def demo(out: str | Path = "runs/demo", pace: float = 1.0) -> dict:
    """Run every step, print what happens, and return the scores. `pace` scales every step budget (the tests run
    the whole story at a fiftieth of it)."""
    out = Path(out)
    started = time.perf_counter()
    results = {"sentiment": _pretrain_then_fine_tune(out, pace)}
    results["tagging"] = _tagging(out, pace)
    results["translation"] = _translation(out, pace)
    print(f"\ndone in {(time.perf_counter() - started) / 60:.1f} min; models and logs in {out}/")
    return results


def _run(values: dict) -> RunConfig:
    return RunConfig.from_values(values, "demo")


def _data(out: Path, name: str) -> Path:
    """A bundled file, copied beside the demo's models: the runs' configs then name it by a path under `out`
    (relative when `out` is), not by where Python installed attnkit."""
    copy = out / "data" / name
    if not (copy.is_file() and filecmp.cmp(DEMO_DATA / name, copy, shallow=False)):  # new, or from another version
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEMO_DATA / name, copy)
    return copy


def _steps(budget: int, pace: float) -> int:
    return max(2, round(budget * pace))


def _pretrain_then_fine_tune(out: Path, pace: float) -> dict:
    steps = _steps(PRETRAIN_STEPS, pace)
    print(f"1. pretraining a small encoder (masked LM), {steps} steps on 8,568 unlabelled movie-review sentences ...")
    pretrained = out / "pretrained"
    run = _run(
        {
            "task": {"name": "pretrain"},
            "out": str(pretrained),
            "data": {"train": str(_data(out, "movies.text.txt")), "max_length": 64},
            "tokenizer": {"vocab_size": 4000, "lowercase": True},
            "model": {"arch": "encoder", **SMALL},
            "train": {"max_steps": steps, "lr": 1e-3, "eval_every": 100, "patience": None},
        }
    )
    summary = pretrain(run, overwrite=True, quiet=True)
    print(
        f"   held-out perplexity {summary['dev']['perplexity']:.0f} (guessing among the 4,000 subwords would be "
        "4,000; lower is better)"
    )

    print("2. sentiment (N->1) with few labels: the pretrained encoder fine-tuned vs the same model from scratch")
    rows = _read_rows(_data(out, "movies.train.tsv"))
    dev_labels = [label for label, _ in _read_rows(_data(out, "movies.dev.tsv"))[1:]]
    chance = _commonest_share(dev_labels)
    print(f"   dev accuracy on {len(dev_labels)} held-out reviews (always the commonest label: {chance:.1%})")
    curves: dict[str, list[float]] = {"from scratch": [], "pretrained, fine-tuned": []}
    print(f"   {'labelled':>8}  {'from scratch':>12}  {'fine-tuned':>10}")
    for size in SIZES:
        subset = out / "data" / f"movies.{size}.tsv"
        _write_rows(subset, rows[: size + 1])
        for name, start in (("from scratch", None), ("pretrained, fine-tuned", pretrained)):
            run_out = out / f"sentiment-{'tuned' if start else 'scratch'}-{size}"
            run = _sentiment_run(subset, _data(out, "movies.dev.tsv"), run_out, start, pretrained, pace)
            summary = train(run, overwrite=True, quiet=True)
            curves[name].append(summary["dev"]["accuracy"])
        scratch, tuned = curves["from scratch"][-1], curves["pretrained, fine-tuned"][-1]
        print(f"   {size:>8,}  {scratch:>12.1%}  {tuned:>10.1%}   {_compare(tuned, scratch)}")
    print(
        "   pretraining pays with more text than these 8,568 sentences, or from a published checkpoint:\n"
        "   examples/sentiment-minilm.yaml fine-tunes all-MiniLM-L6-v2 past 85% on the test set (docs/benchmarks.md)"
    )
    plot = out / "learning_curve.png"
    learning_curve(SIZES, curves, plot, "Movie-review sentiment, dev accuracy", chance=chance)
    print(f"   learning curve: {plot}")
    best = Pipeline.load(out / f"sentiment-tuned-{SIZES[-1]}")
    for review, prediction in zip(REVIEWS, best.predict(REVIEWS)):
        print(f"   {prediction['label']:<8} {prediction['probability']:.2f}  {review}")
    return {"sizes": SIZES, **curves}


def _compare(tuned: float, scratch: float) -> str:
    """What the two accuracies show, in words; under two points apart is within the noise of 500 dev reviews."""
    gap = round(100 * (tuned - scratch), 1)
    if abs(gap) < 2:
        return "level (under 2 points apart): this pretraining neither helps nor hurts"
    if gap > 0:
        return f"pretraining helps: +{gap:.1f} points"
    return f"from scratch is ahead by {-gap:.1f} points: this much pretraining no longer helps"


def _sentiment_run(subset: Path, dev: Path, out: Path, start: Path | None, pretrained: Path, pace: float) -> RunConfig:
    settings = {"epochs": 10, "lr": 5e-4, "patience": 3}
    if pace < 1:
        settings["max_steps"] = _steps(100, pace)
    values = {
        "task": {"name": "classify"},
        "out": str(out),
        "data": {"train": str(subset), "dev": str(dev)},
    }
    if start is not None:  # the architecture and the tokenizer come from the pretrained checkpoint
        return _run({**values, "model": {"dropout": 0.1}, "train": {**settings, "init": str(start)}})
    return _run(
        {**values, "tokenizer": {"path": str(pretrained / "tokenizer.json")}, "model": SMALL, "train": settings}
    )


def _tagging(out: Path, pace: float) -> dict:
    steps = _steps(TAGGING_STEPS, pace)
    train_file, dev_file = _data(out, "tr-pos.train.conll"), _data(out, "tr-pos.dev.conll")
    print(f"3. part-of-speech tagging (N->N), Turkish Web Treebank, 1,500 sentences, {steps} steps ...")
    run = _run(
        {
            "task": {"name": "tag"},
            "out": str(out / "tagging"),
            "data": {"train": str(train_file), "dev": str(dev_file)},
            "tokenizer": {"vocab_size": 3000},
            "model": {**SMALL, "positions": "relative"},
            "train": {"max_steps": steps, "lr": 1e-3, "patience": None},
        }
    )
    summary = train(run, overwrite=True, quiet=True)
    chance = _commonest_share([tag for sentence in read_tagged(dev_file) for tag in sentence.tags])
    print(
        f"   dev word accuracy {summary['dev']['accuracy']:.1%} on 300 sentences (always the commonest tag: "
        f"{chance:.1%})"
    )
    (tags,) = Pipeline.load(out / "tagging").predict([TURKISH])
    print("   " + " ".join(f"{word}/{tag}" for word, tag in zip(TURKISH.split(), tags)))
    return summary["dev"]


def _commonest_share(gold: list[str]) -> float:
    """The accuracy of always giving the commonest of the `gold` labels: the best that a model which ignores its
    input can do, which is what chance means here."""
    return max(Counter(gold).values()) / len(gold)


def _translation(out: Path, pace: float) -> dict:
    steps = _steps(TRANSLATION_STEPS, pace)
    print(f"4. translation (N->M), English to Spanish Bible verses, 3,000 pairs, {steps} steps ...")
    run = _run(
        {
            "task": {"name": "seq2seq", "beam_size": 4, "no_repeat_ngram": 3},
            "out": str(out / "translation"),
            "data": {
                "train": str(_data(out, "en-es.train.tsv")),
                "dev": str(_data(out, "en-es.dev.tsv")),
                "max_length": 40,
                "max_new_tokens": 40,
            },
            "tokenizer": {"vocab_size": 3000},
            "model": SMALL,
            "train": {
                "max_steps": steps,
                "lr": 2e-3,
                "eval_every": 10**9,  # dev once, at the end: beam search over the verses is slow
                "patience": None,
                "eval_examples": 100,
            },
        }
    )
    summary = train(run, overwrite=True, quiet=True)
    bleu = summary["dev"]["bleu"]
    print(f"   dev BLEU {bleu:.1f} on 100 verses (0: no word in common with the references, 100: identical)")
    if bleu < 10:  # what the outputs below look like at such a score
        print(f"   after {steps} steps the model writes verse-shaped Spanish, not yet translations of its input;")
    else:
        print(f"   after {steps} steps the outputs begin to follow their input;")
    print("   examples/translate-en-es.yaml trains a real translator (docs/benchmarks.md)")
    for verse, output in zip(VERSES, Pipeline.load(out / "translation").predict(VERSES)):
        print(f"   {verse}\n     -> {output}")
    return summary["dev"]


def _read_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(rows)
