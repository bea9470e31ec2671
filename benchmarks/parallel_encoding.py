"""Parallel encoding, the reason Transformers replaced RNNs: forward + backward time of the attnkit encoder
against a bidirectional LSTM stack of the same parameter count, as the sequence grows from 32 to 1024 tokens.

Encoder: `attnkit.nn.Encoder`, 4 pre-norm layers, dim 256, 4 heads, feed-forward 1024, sinusoidal positions,
dropout 0. LSTM: an embedding of the same size, then `nn.LSTM` of 4 layers, bidirectional (an encoder sees the
whole sentence, so the fair counterpart reads it both ways), 186 units per direction: 3,160,512 parameters
against the encoder's 3,159,552 (+0.03%), both counted without the embedding (vocabulary 8,000 x 256 on each
side). Loss = mean square of the outputs. Two settings: a fixed 8,192 tokens per batch (batch = 8192 / length),
and one sequence per batch, where parallelism over time is the only parallelism there is. The two models
alternate step by step in one process, float32, 2 torch threads; the median of --repeats steps after --warmup.

    python benchmarks/parallel_encoding.py [--repeats 5] [--warmup 1] [--plot docs/parallel_encoding.png]
    python benchmarks/parallel_encoding.py --quick   # about 20 s: fewer lengths and tokens, no plot

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from machine import machine
from torch import Tensor, nn

from attnkit import ModelConfig
from attnkit.nn import Encoder

VOCAB, DIM, HEADS, FF, LAYERS = 8000, 256, 4, 1024, 4
LSTM_HIDDEN = 186  # per direction; chosen so that the LSTM's parameters match the encoder's
LENGTHS = (32, 64, 128, 256, 512, 1024)
NAMES = ("encoder", "lstm")
PLOT = Path(__file__).resolve().parent.parent / "docs" / "parallel_encoding.png"


class LSTMEncoder(nn.Module):
    """Embedding, then a bidirectional LSTM stack; returns (batch, time, 2 * hidden)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, DIM)
        self.lstm = nn.LSTM(DIM, LSTM_HIDDEN, LAYERS, batch_first=True, bidirectional=True)

    def forward(self, tokens: Tensor) -> Tensor:
        # tokens: (batch, time) ids
        return self.lstm(self.embedding(tokens))[0]


def build() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=VOCAB, dim=DIM, num_heads=HEADS, ff_dim=FF, num_layers=LAYERS, dropout=0.0, positions="sinusoidal"
    )
    return {"encoder": Encoder(config).train(), "lstm": LSTMEncoder().train()}


def body_parameters(model: nn.Module) -> int:
    """Parameters outside the token embedding (the same vocabulary x 256 table on both sides)."""
    return sum(p.numel() for p in model.parameters()) - model.embedding.weight.numel()


def step(model: nn.Module, tokens: Tensor) -> float:
    """Seconds for one forward + backward."""
    start = time.perf_counter()
    model(tokens).pow(2).mean().backward()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def measure(models: dict[str, nn.Module], batch: int, length: int, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per step of each model on one (batch, length) of random tokens, alternating the models."""
    tokens = torch.randint(1, VOCAB, (batch, length), generator=torch.Generator().manual_seed(length))
    seconds: dict[str, list[float]] = {name: [] for name in NAMES}
    for i in range(warmup + repeats):
        for name in NAMES if i % 2 == 0 else NAMES[::-1]:  # alternate who goes first
            elapsed = step(models[name], tokens)
            if i >= warmup:
                seconds[name].append(elapsed)
    return {name: statistics.median(s) for name, s in seconds.items()}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    milliseconds = FuncFormatter(lambda value, _: f"{value:,.0f}")

    settings = list(dict.fromkeys(row["setting"] for row in rows))
    figure, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.4), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        mine = [row for row in rows if row["setting"] == setting]
        lengths = [row["length"] for row in mine]
        for name, label, marker in (("encoder", "Transformer encoder", "o"), ("lstm", "bidirectional LSTM", "s")):
            ax.plot(lengths, [row["ms"][name] for row in mine], marker=marker, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(milliseconds)
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("ms per forward + backward")
        ax.set_title(setting)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle("4 layers, 3.16M parameters each, float32, 2 CPU threads", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model, length and setting")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=8192, help="tokens per batch in the first setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", type=Path, help=f"where to save the plot (default {PLOT}; none with --quick)")
    parser.add_argument("--quick", action="store_true", help="lengths 32, 128, 512; 2,048 tokens per batch; 3 repeats")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths = (32, 128, 512) if args.quick else LENGTHS
    if args.quick:
        args.tokens, args.repeats = 2048, 3
    plot_path = args.plot or (None if args.quick else PLOT)

    models = build()
    params = {name: body_parameters(model) for name, model in models.items()}
    settings = {f"{args.tokens:,} tokens per batch": lambda length: args.tokens // length, "batch 1": lambda _: 1}
    rows = []
    for setting, batch_of in settings.items():
        for length in lengths:
            batch = batch_of(length)
            seconds = measure(models, batch, length, args.warmup, args.repeats)
            rows.append(
                {
                    "setting": setting,
                    "length": length,
                    "batch": batch,
                    "ms": {name: s * 1000 for name, s in seconds.items()},
                    "tokens_per_s": {name: batch * length / s for name, s in seconds.items()},
                    "us_per_token": {name: s * 1e6 / (batch * length) for name, s in seconds.items()},
                    "lstm_over_encoder": seconds["lstm"] / seconds["encoder"],
                    # steps that must run one after another: the encoder's layers, the LSTM's time steps
                    # (PyTorch runs the two directions of a layer one after the other too)
                    "serial_steps": {"encoder": LAYERS, "lstm": LAYERS * 2 * length},
                }
            )

    print(f"forward + backward, float32, {torch.get_num_threads()} threads, median of {args.repeats} steps")
    print(
        f"parameters without the embedding: encoder {params['encoder']:,}, bidirectional LSTM {params['lstm']:,} "
        f"({params['lstm'] / params['encoder'] - 1:+.2%})"
    )
    print(
        f"{'setting':<24} {'length':>6} {'batch':>5} {'enc ms':>8} {'LSTM ms':>8} {'enc tok/s':>10} "
        f"{'LSTM tok/s':>10} {'enc us/tok':>10} {'LSTM us/tok':>11} {'LSTM/enc':>9} {'LSTM serial':>11}"
    )
    for r in rows:
        print(
            f"{r['setting']:<24} {r['length']:>6} {r['batch']:>5} {r['ms']['encoder']:>8,.1f} {r['ms']['lstm']:>8,.1f} "
            f"{r['tokens_per_s']['encoder']:>10,.0f} {r['tokens_per_s']['lstm']:>10,.0f} "
            f"{r['us_per_token']['encoder']:>10.1f} {r['us_per_token']['lstm']:>11.1f} "
            f"{r['lstm_over_encoder']:>8.2f}x {r['serial_steps']['lstm']:>11,}"
        )
    if plot_path:
        plot(rows, plot_path)
        print(f"plot: {plot_path}")
    print(
        json.dumps(
            {
                "benchmark": "parallel_encoding",
                "machine": machine(),
                "repeats": args.repeats,
                "parameters": params,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
