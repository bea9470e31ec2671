"""Penn Treebank word-level language modelling: attnkit's Transformer decoder against an LSTM language model
with the same number of parameters, trained side by side for the same wall time.

Same data for both: `attnkit pretrain` tokenizes ptb.{train,valid,test}.txt once (the standard 10,000-word
vocabulary plus </s> at each line end, as the usual <eos>) into token files, and both models read the same
blocks of 128 tokens, each block scored on its own (no state carried across blocks, for either model). Both use
AdamW with warmup and tied input/output embeddings; the LSTM (2 layers, Zaremba et al.'s architecture) gets
dropout 0.3 and lr 2e-3, the values that worked best for it at this size.

    python benchmarks/lm_vs_lstm.py --minutes 30 [--data ../shared/data/text] [--out runs/bench-lm]

Prints a table, then one JSON line. Reference: Zaremba et al.'s medium LSTM reaches 82.7 test perplexity with
20M parameters after 39 epochs on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from machine import machine
from torch import nn

import attnkit
from attnkit.data.token_files import Blocks
from attnkit.nn import count_parameters

BLOCK, BATCH_TOKENS = 128, 4096
DECODER = {"dim": 256, "num_heads": 4, "ff_dim": 1024, "num_layers": 4, "dropout": 0.2, "positions": "rotary"}


def train_attnkit(data: Path, out: Path, minutes: float) -> dict:
    run = attnkit.RunConfig.from_values(
        {
            "task": {"name": "pretrain"},
            "out": str(out),
            "data": {
                "train": str(data / "ptb.train.txt"),
                "dev": str(data / "ptb.valid.txt"),
                "test": str(data / "ptb.test.txt"),
                "max_length": BLOCK,
                "cache": str(out) + ".corpus",
            },
            "tokenizer": {"kind": "word", "vocab_size": 20000, "min_frequency": 1},
            "model": {"arch": "decoder", **DECODER},
            "train": {
                "epochs": 1000,
                "max_minutes": minutes,
                "lr": 1e-3,
                "warmup_steps": 500,
                "schedule": "inverse_sqrt",
                "batch_tokens": BATCH_TOKENS,
                "precision": "bfloat16",
                "eval_every": 500,
                "patience": None,
            },
        },
        "benchmark",
    )
    summary = attnkit.pretrain(run, overwrite=True)
    model = attnkit.load(out).model
    return {
        "test_perplexity": summary["test"]["perplexity"],
        "dev_perplexity": summary["dev"]["perplexity"],
        "parameters": count_parameters(model),
        "steps": summary["steps"],
        "train_minutes": summary["minutes"],
    }


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab: int, size: int, layers: int = 2, dropout: float = 0.3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, size)
        self.lstm = nn.LSTM(size, size, layers, batch_first=True, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(size, vocab)
        self.output.weight = self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.dropout(self.embedding(ids)))
        return self.output(self.dropout(hidden))


def lstm_size_for(vocab: int, parameters: int) -> int:
    """The hidden size whose 2-layer tied LSTM LM has the parameter count closest to `parameters`."""
    return min(range(64, 2048), key=lambda h: abs(count_parameters(_counting_lstm(vocab, h)) - parameters))


def _counting_lstm(vocab: int, size: int) -> nn.Module:
    with torch.device("meta"):
        return LSTMLanguageModel(vocab, size)


def perplexity(model: nn.Module, blocks: Blocks) -> float:
    model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(blocks), 32):
            rows = [blocks[i]["ids"] for i in range(start, min(start + 32, len(blocks)))]
            for row in rows:  # blocks differ in length only at the very end
                ids = torch.from_numpy(row)[None]
                logits = model(ids[:, :-1])
                nll += float(nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="sum"))
                count += ids.shape[1] - 1
    model.train()
    return math.exp(nll / count)


def train_lstm(corpus: Path, vocab: int, parameters: int, minutes: float) -> dict:
    torch.manual_seed(1)
    size = lstm_size_for(vocab, parameters)
    model = LSTMLanguageModel(vocab, size)
    train_blocks = Blocks.open(corpus / "train.u16", BLOCK)
    full = [i for i in range(len(train_blocks)) if len(train_blocks[i]["ids"]) == BLOCK]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    batch, warmup, step = BATCH_TOKENS // BLOCK, 500, 0
    generator = torch.Generator().manual_seed(1)
    started = time.perf_counter()
    while time.perf_counter() - started < 60 * minutes:
        for group in optimizer.param_groups:
            group["lr"] = 2e-3 * min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))
        chosen = torch.randint(len(full), (batch,), generator=generator)
        ids = torch.stack([torch.from_numpy(train_blocks[full[int(i)]]["ids"]) for i in chosen])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(ids[:, :-1])
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
    train_minutes = (time.perf_counter() - started) / 60
    return {
        "test_perplexity": perplexity(model, Blocks.open(corpus / "test.u16", BLOCK)),
        "dev_perplexity": perplexity(model, Blocks.open(corpus / "dev.u16", BLOCK)),
        "parameters": count_parameters(model),
        "hidden_size": size,
        "steps": step,
        "train_minutes": train_minutes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall time for each model")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/text"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-lm"))
    args = parser.parse_args()

    results = {"attnkit": train_attnkit(args.data, args.out / "attnkit", args.minutes)}
    corpus = Path(str(args.out / "attnkit") + ".corpus")
    vocab = attnkit.load(args.out / "attnkit").tokenizer.vocab_size
    results["lstm"] = train_lstm(corpus, vocab, results["attnkit"]["parameters"], args.minutes)

    print(f"Penn Treebank word LM, {args.minutes:g} min of training each, blocks of {BLOCK} scored independently")
    print(f"{'':<9} {'params':>10} {'steps':>7} {'dev ppl':>8} {'test ppl':>9}")
    for name, r in results.items():
        print(
            f"{name:<9} {r['parameters']:>10,} {r['steps']:>7} {r['dev_perplexity']:>8.1f} {r['test_perplexity']:>9.1f}"
        )
    print(json.dumps({"benchmark": "lm_vs_lstm", "minutes": args.minutes, "machine": machine(), **results}))


if __name__ == "__main__":
    main()
