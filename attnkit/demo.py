"""`attnkit demo`: the Transformer story on bundled data, in about five minutes on two CPU cores.

1. pretrain a small encoder (masked LM) on 8,568 unlabelled movie-review sentences;
2. fine-tune it on 500 and 4,000 labelled reviews, and train the same model from scratch on the same examples:
   both accuracies side by side, and the learning curve as a PNG;
3. tag a Turkish sentence with parts of speech (N->N), and translate Bible verses to Spanish (N->M), each with a
   model trained for about a minute.

A few CPU minutes show the workflow, not the quality: docs/benchmarks.md has the full runs.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from attnkit.config import RunConfig
from attnkit.pipeline import Pipeline
from attnkit.plots import learning_curve
from attnkit.pretrain import pretrain
from attnkit.train import train

DEMO_DATA = Path(__file__).parent / "demo_data"
SIZES = [500, 4000]
SMALL = {"dim": 128, "num_heads": 4, "ff_dim": 512, "num_layers": 2, "dropout": 0.1}
REVIEWS = ["A gorgeous, witty and deeply moving film.", "The plot is a mess and the jokes fall flat."]
TURKISH = "Bu akşam eve erken dönmek istiyorum ."
VERSES = ["And the LORD spake unto Moses, saying,", "And God said, Let there be light: and there was light."]


def demo(out: str | Path = "runs/demo", pace: float = 1.0) -> dict:
    """Run every step, print what happens, and return the scores. `pace` scales every time budget (the tests
    run the whole story at a fiftieth of it)."""
    out = Path(out)
    started = time.perf_counter()
    results = {"sentiment": _pretrain_then_fine_tune(out, pace)}
    results["tagging"] = _tagging(out, pace)
    results["translation"] = _translation(out, pace)
    print(f"\ndone in {(time.perf_counter() - started) / 60:.1f} min; models and logs in {out}/")
    return results


def _run(values: dict, where: str) -> RunConfig:
    return RunConfig.from_values(values, where)


def _pretrain_then_fine_tune(out: Path, pace: float) -> dict:
    print("1. pretraining a small encoder (masked LM) on 8,568 unlabelled movie-review sentences ...")
    pretrained = out / "pretrained"
    summary = pretrain(
        _run(
            {
                "task": {"name": "pretrain"},
                "out": str(pretrained),
                "data": {"train": str(DEMO_DATA / "movies.text.txt"), "max_length": 64},
                "tokenizer": {"vocab_size": 4000, "lowercase": True},
                "model": {"arch": "encoder", **SMALL},
                "train": {
                    "epochs": 40,
                    "max_minutes": 1.25 * pace,
                    "lr": 1e-3,
                    "warmup_steps": 100,
                    "batch_tokens": 4096,
                    "eval_every": 100,
                    "patience": None,
                },
            },
            "demo",
        ),
        overwrite=True,
        quiet=True,
    )
    print(f"   held-out perplexity {summary['dev']['perplexity']:.1f} after {summary['steps']} steps")

    print("2. sentiment with few labels: fine-tuning the pretrained encoder vs the same model from scratch")
    rows = _read_rows(DEMO_DATA / "movies.train.tsv")
    curves: dict[str, list[float]] = {"from scratch": [], "pretrained, fine-tuned": []}
    print(f"   {'labelled':>8}  {'from scratch':>12}  {'fine-tuned':>10}")
    for size in SIZES:
        subset = out / "data" / f"movies.{size}.tsv"
        _write_rows(subset, rows[: size + 1])
        for name, start in (("from scratch", None), ("pretrained, fine-tuned", pretrained)):
            run_out = out / f"sentiment-{'tuned' if start else 'scratch'}-{size}"
            summary = train(_sentiment_run(subset, run_out, start, pretrained, pace), overwrite=True, quiet=True)
            curves[name].append(summary["dev"]["accuracy"])
        print(f"   {size:>8,}  {curves['from scratch'][-1]:>12.3f}  {curves['pretrained, fine-tuned'][-1]:>10.3f}")
    plot = out / "learning_curve.png"
    learning_curve(SIZES, curves, plot, "Movie-review sentiment, dev accuracy")
    print(f"   learning curve: {plot}")
    best = Pipeline.load(out / f"sentiment-tuned-{SIZES[-1]}")
    for review, prediction in zip(REVIEWS, best.predict(REVIEWS)):
        print(f"   {prediction['label']:<8} {prediction['probability']:.2f}  {review}")
    return {"sizes": SIZES, **curves}


def _sentiment_run(subset: Path, out: Path, start: Path | None, pretrained: Path, pace: float) -> RunConfig:
    settings = {
        "epochs": 8,
        "max_minutes": 0.5 * pace,
        "lr": 5e-4,
        "warmup_steps": 30,
        "patience": 3,
        "batch_tokens": 2048,
    }
    if start is not None:  # the architecture and the tokenizer come from the pretrained checkpoint
        return _run(
            {
                "task": {"name": "classify"},
                "out": str(out),
                "data": {"train": str(subset), "dev": str(DEMO_DATA / "movies.dev.tsv")},
                "model": {"dropout": 0.1},
                "train": {**settings, "init": str(start)},
            },
            "demo",
        )
    return _run(
        {
            "task": {"name": "classify"},
            "out": str(out),
            "data": {"train": str(subset), "dev": str(DEMO_DATA / "movies.dev.tsv")},
            "tokenizer": {"path": str(pretrained / "tokenizer.json")},
            "model": SMALL,
            "train": settings,
        },
        "demo",
    )


def _tagging(out: Path, pace: float) -> dict:
    print("3. part-of-speech tagging (N->N), Turkish Web Treebank sample, half a minute of training ...")
    summary = train(
        _run(
            {
                "task": {"name": "tag"},
                "out": str(out / "tagging"),
                "data": {"train": str(DEMO_DATA / "tr-pos.train.conll"), "dev": str(DEMO_DATA / "tr-pos.dev.conll")},
                "tokenizer": {"vocab_size": 3000},
                "model": {**SMALL, "positions": "relative"},
                "train": {"epochs": 30, "max_minutes": 0.5 * pace, "lr": 1e-3, "warmup_steps": 50, "patience": None},
            },
            "demo",
        ),
        overwrite=True,
        quiet=True,
    )
    (tags,) = Pipeline.load(out / "tagging").predict([TURKISH])
    print(f"   dev word accuracy {summary['dev']['accuracy']:.3f}")
    print("   " + " ".join(f"{word}/{tag}" for word, tag in zip(TURKISH.split(), tags)))
    return summary["dev"]


def _translation(out: Path, pace: float) -> dict:
    print("4. translation (N->M), English to Spanish Bible verses, one minute of training ...")
    summary = train(
        _run(
            {
                "task": {"name": "seq2seq", "beam_size": 4, "no_repeat_ngram": 3},
                "out": str(out / "translation"),
                "data": {
                    "train": str(DEMO_DATA / "en-es.train.tsv"),
                    "dev": str(DEMO_DATA / "en-es.dev.tsv"),
                    "max_length": 40,
                    "max_target_length": 40,
                },
                "tokenizer": {"vocab_size": 3000},
                "model": SMALL,
                "train": {
                    "epochs": 100,
                    "max_minutes": 1.0 * pace,
                    "lr": 2e-3,
                    "warmup_steps": 100,
                    "batch_tokens": 4096,
                    "eval_every": 10**9,
                    "patience": None,
                    "eval_examples": 100,
                },
            },
            "demo",
        ),
        overwrite=True,
        quiet=True,
    )
    print(
        f"   dev BLEU {summary['dev']['bleu']:.1f} after one minute (examples/translate-en-es.yaml trains a real one)"
    )
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
