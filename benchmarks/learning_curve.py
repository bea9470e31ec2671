"""Movie-review sentiment with 10%, 30% and 100% of the labelled training set: the same encoder fine-tuned from
an attnkit-pretrained checkpoint against trained from scratch. Test accuracy of each, and the plot.

    python benchmarks/learning_curve.py --pretrained runs/pretrain-text [--data ../shared/data/sentiment]
        [--plot docs/learning_curve.png] [--out runs/bench-curve]

The pretrained checkpoint fixes the architecture and the tokenizer for both sides. Prints a table, then one
JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import attnkit
from attnkit.apps.plots import learning_curve

FRACTIONS = [0.1, 0.3, 1.0]
TRAIN = {"epochs": 20, "max_minutes": 25, "warmup_steps": 100, "patience": 4}
FINE_TUNE = {**TRAIN, "lr": 3e-4, "layer_decay": 0.9}
SCRATCH = {**TRAIN, "lr": 5e-4}
REGULARIZATION = {"dropout": 0.2, "token_dropout": 0.1}


def subsets(data: Path, out: Path) -> list[tuple[int, Path]]:
    """The first fraction of the training rows after one seeded shuffle, so that smaller sets are inside larger."""
    with (data / "movies.train.tsv").open(encoding="utf-8", newline="") as f:
        header, *rows = list(csv.reader(f, delimiter="\t"))
    random.Random(1).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    result = []
    for fraction in FRACTIONS:
        count = round(len(rows) * fraction)
        path = out / f"movies.train.{count}.tsv"
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows([header, *rows[:count]])
        result.append((count, path))
    return result


def run(train_file: Path, data: Path, out: Path, pretrained: Path, fine_tune: bool) -> float:
    source = attnkit.load(pretrained)
    model = dict(REGULARIZATION)
    values = {
        "task": {"name": "classify"},
        "out": str(out),
        "data": {
            "train": str(train_file),
            "dev": str(data / "movies.dev.tsv"),
            "test": str(data / "movies.test.tsv"),
            "max_length": 128,
        },
    }
    if fine_tune:
        values.update(model=model, train={**FINE_TUNE, "init": str(pretrained)})
    else:  # the same architecture and tokenizer, random weights
        config = {
            k: v
            for k, v in vars(source.model.config).items()
            if k not in ("arch", "vocab_size", "target_vocab_size", "pad_id")
        }
        values.update(model={**config, **model}, tokenizer={"path": str(pretrained / "tokenizer.json")}, train=SCRATCH)
    summary = attnkit.train(attnkit.RunConfig.from_values(values, "benchmark"), overwrite=True)
    return summary["test"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/sentiment"))
    parser.add_argument("--plot", type=Path, default=Path("docs/learning_curve.png"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-curve"))
    args = parser.parse_args()
    sizes, curves = [], {"from scratch": [], "pretrained by attnkit, fine-tuned": []}
    for count, path in subsets(args.data, args.out / "data"):
        sizes.append(count)
        for name, fine_tune in (("from scratch", False), ("pretrained by attnkit, fine-tuned", True)):
            out = args.out / f"{'tuned' if fine_tune else 'scratch'}-{count}"
            curves[name].append(run(path, args.data, out, args.pretrained, fine_tune))
    learning_curve(sizes, curves, args.plot, "Movie-review sentiment, test accuracy", chance=0.5)
    print(f"{'labelled':>8} {'scratch':>8} {'fine-tuned':>11}")
    for i, size in enumerate(sizes):
        print(f"{size:>8,} {curves['from scratch'][i]:>8.4f} {curves['pretrained by attnkit, fine-tuned'][i]:>11.4f}")
    print(json.dumps({"benchmark": "learning_curve", "sizes": sizes, **curves, "plot": str(args.plot)}))


if __name__ == "__main__":
    main()
