"""One training step (forward + backward + AdamW) of the attnkit encoder against Hugging Face BertModel.

Same shape and same math on both sides: 4 post-norm layers, dim 256, 4 heads, feed-forward 1024 (GELU), learned
positions with an embedding LayerNorm, vocabulary 30522, dropout 0.1 (hidden and attention), batch 32 x 128 tokens,
loss = mean square of the last hidden states. Speed: the two models alternate step by step in one process, in
float32 and in bfloat16 autocast; the median tokens/s of each is compared. Memory: each model trains in a fresh
subprocess, and the peak resident memory above what it held before its first step is compared (PyTorch keeps no
peak counter on the CPU; large allocations are served by mmap there so that freed memory leaves the resident set).

    python benchmarks/encoder_step.py [--steps 8] [--batch 32] [--time 128]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from machine import machine

VOCAB, DIM, HEADS, FF, LAYERS = 30522, 256, 4, 1024, 4


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "attnkit":
        from attnkit import ModelConfig, build_model

        config = ModelConfig(
            arch="encoder",
            vocab_size=VOCAB,
            dim=DIM,
            num_heads=HEADS,
            ff_dim=FF,
            num_layers=LAYERS,
            dropout=0.1,
            attention_dropout=0.1,
            activation="gelu",
            norm_first=False,
            norm_eps=1e-12,
            positions="learned",
            max_positions=512,
            embedding_norm=True,
            scale_embeddings=False,
        )
        return build_model(config)
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=DIM,
        num_attention_heads=HEADS,
        intermediate_size=FF,
        num_hidden_layers=LAYERS,
        max_position_embeddings=512,
        attn_implementation="sdpa",
    )
    return BertModel(config, add_pooling_layer=False)


def forward(name: str, model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    if name == "attnkit":
        return model(tokens)
    return model(input_ids=tokens).last_hidden_state


class Trainer:
    """A model, its AdamW, and one fixed batch."""

    def __init__(self, name: str, batch: int, time_steps: int) -> None:
        self.name = name
        self.model = build(name).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.tokens = torch.randint(1, VOCAB, (batch, time_steps), generator=torch.Generator().manual_seed(1))

    def step(self, bf16: bool) -> float:
        """Seconds for one step."""
        start = time.perf_counter()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            hidden = forward(self.name, self.model, self.tokens)
        loss = hidden.float().pow(2).mean()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start


def rss_bytes(field: str = "VmRSS") -> int:
    """VmRSS (now) or VmHWM (peak) of this process; unlike ru_maxrss, the peak does not carry over from the
    parent that started us."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_memory(name: str, bf16: bool, batch: int, time_steps: int) -> None:
    """Run in a subprocess: prints the peak RSS growth over three steps, in bytes."""
    trainer = Trainer(name, batch, time_steps)
    before = rss_bytes()
    for _ in range(3):
        trainer.step(bf16)
    print(rss_bytes("VmHWM") - before)


def memory_of(name: str, bf16: bool, batch: int, time_steps: int) -> int:
    command = [sys.executable, __file__, "--memory-of", name, "--batch", str(batch), "--time", str(time_steps)]
    # glibc keeps freed pages of its heap; serving every allocation over 64 KiB with mmap returns them at free,
    # so that the resident high-water mark follows the live tensors instead of the allocator's history.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(command + (["--bf16"] if bf16 else []), capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per model and precision")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--time", type=int, default=128)
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        measure_memory(args.memory_of, args.bf16, args.batch, args.time)
        return

    names = ["attnkit", "transformers"]
    trainers = {name: Trainer(name, args.batch, args.time) for name in names}
    params = {name: sum(p.numel() for p in t.model.parameters()) for name, t in trainers.items()}
    tokens_per_step = args.batch * args.time
    results = {}
    for precision in ("float32", "bfloat16"):
        bf16 = precision == "bfloat16"
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for i in range(args.warmup + args.steps):
            for name in names if i % 2 == 0 else names[::-1]:  # alternate who goes first
                elapsed = trainers[name].step(bf16)
                if i >= args.warmup:
                    seconds[name].append(elapsed)
        speed = {name: tokens_per_step / statistics.median(s) for name, s in seconds.items()}
        memory = {name: memory_of(name, bf16, args.batch, args.time) for name in names}
        results[precision] = {
            "tokens_per_s": speed,
            "peak_memory_mib": {name: m / 2**20 for name, m in memory.items()},
            "speed_ratio": speed["attnkit"] / speed["transformers"],
            "memory_ratio": memory["attnkit"] / memory["transformers"],
        }

    print(f"encoder training step, batch {args.batch} x {args.time} tokens, {LAYERS} layers, dim {DIM}")
    print(f"parameters: attnkit {params['attnkit']:,}, transformers {params['transformers']:,}")
    print(
        f"{'precision':<10} {'attnkit tok/s':>14} {'HF tok/s':>10} {'speed ratio':>12} "
        f"{'attnkit MiB':>12} {'HF MiB':>8} {'memory ratio':>13}"
    )
    for precision, r in results.items():
        print(
            f"{precision:<10} {r['tokens_per_s']['attnkit']:>14,.0f} {r['tokens_per_s']['transformers']:>10,.0f} "
            f"{r['speed_ratio']:>11.2f}x {r['peak_memory_mib']['attnkit']:>12,.0f} "
            f"{r['peak_memory_mib']['transformers']:>8,.0f} {r['memory_ratio']:>12.2f}x"
        )
    print(json.dumps({"benchmark": "encoder_step", "machine": machine(), "steps": args.steps, **results}))


if __name__ == "__main__":
    main()
