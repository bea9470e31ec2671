"""`attnkit demo`: the main job on bundled data in a few minutes - train a sentiment classifier from scratch
on 4,000 movie-review sentences, score it, and predict for new sentences."""

from __future__ import annotations

from pathlib import Path

from attnkit.config import RunConfig
from attnkit.pipeline import Pipeline
from attnkit.train import train

DEMO_DATA = Path(__file__).parent / "demo_data"
REVIEWS = [
    "A gorgeous, witty and deeply moving film.",
    "The plot is a mess and the jokes fall flat.",
    "An uneven but often charming comedy.",
    "I wanted to walk out after twenty minutes.",
]


def demo(out: str | Path = "runs/demo") -> dict:
    """Train, evaluate and predict; returns the training summary."""
    out = Path(out)
    run = RunConfig.from_values(
        {
            "task": {"name": "classify"},
            "out": str(out / "sentiment"),
            "data": {"train": str(DEMO_DATA / "movies.train.tsv"), "dev": str(DEMO_DATA / "movies.dev.tsv")},
            "tokenizer": {"vocab_size": 6000, "lowercase": True},
            "model": {"dim": 256, "num_layers": 2, "ff_dim": 1024, "dropout": 0.1},
            "train": {"epochs": 8, "lr": 5e-4, "warmup_steps": 60, "patience": 3},
        },
        "demo",
    )
    print(f"training a sentiment classifier on {DEMO_DATA / 'movies.train.tsv'} (4,000 sentences) ...")
    summary = train(run, overwrite=True)
    print(f"dev accuracy {summary['dev']['accuracy']:.3f} after {summary['steps']} steps "
          f"({summary['minutes']:.1f} min); model saved in {run.out}")
    pipeline = Pipeline.load(run.out)
    for review, prediction in zip(REVIEWS, pipeline.predict(REVIEWS)):
        print(f"  {prediction['label']:<8} {prediction['probability']:.2f}  {review}")
    print(f"next: attnkit predict {run.out} < your_reviews.txt")
    return summary
