"""Which attention path is faster on this CPU: PyTorch's scaled_dot_product_attention (a flash kernel on the CPU)
or the explicit one (two matrix products and a float32 softmax, as attnkit.nn.attention._attention_with_weights),
in float32 and bfloat16, with a padding mask, for training (forward + backward) and inference, as the key length
grows (about 4,000 tokens per batch), and for one decoding step (64 rows, one query each).

attnkit takes the explicit path on the CPU in bfloat16/float16 up to HALF_EXPLICIT_MAX_KEYS keys, and for a single
query up to ONE_QUERY_EXPLICIT_MAX_KEYS; this is the measurement behind those limits. Median of --repeats calls
after 3 of warm-up.

    python benchmarks/attention_paths.py [--repeats 10]

Prints a table (milliseconds per call), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from machine import machine

HEADS, HEAD_DIM = 8, 64


def milliseconds(path: str, dtype: torch.dtype, batch: int, keys: int, queries: int, grad: bool, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(batch, HEADS, queries, HEAD_DIM, generator=generator).to(dtype).requires_grad_(grad)
    k, v = (torch.randn(batch, HEADS, keys, HEAD_DIM, generator=generator).to(dtype).requires_grad_(grad) for _ in "kv")
    mask = torch.ones(batch, 1, 1, keys, dtype=torch.bool)
    mask[:, :, :, -3:] = False  # some padding, as in a batch of different lengths

    def call() -> None:
        if path == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            scores = (q @ k.transpose(-1, -2) * HEAD_DIM**-0.5).masked_fill(~mask, float("-inf"))
            out = scores.float().softmax(-1).to(dtype) @ v
        if grad:
            out.sum().backward()

    times = []
    with torch.set_grad_enabled(grad):
        for i in range(3 + repeats):
            began = time.perf_counter()
            call()
            if i >= 3:
                times.append(1000 * (time.perf_counter() - began))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rows = []
    for setting, grad in (("train", True), ("inference", False), ("decode step", False)):
        for keys in (16, 64, 128, 256, 512):
            batch, queries = (64, 1) if setting == "decode step" else (max(4000 // keys, 1), keys)
            row = {"setting": setting, "keys": keys}
            for dtype in (torch.float32, torch.bfloat16):
                for path in ("sdpa", "explicit"):
                    name = f"{str(dtype).removeprefix('torch.')} {path}"
                    row[name] = round(milliseconds(path, dtype, batch, keys, queries, grad, args.repeats), 2)
            rows.append(row)
    names = [name for name in rows[0] if name not in ("setting", "keys")]
    print(json.dumps(machine()))
    print(f"{'setting':<12} {'keys':>5} " + " ".join(f"{name:>18}" for name in names))
    for row in rows:
        print(f"{row['setting']:<12} {row['keys']:>5} " + " ".join(f"{row[name]:>18.2f}" for name in names))
    print(json.dumps({"milliseconds": rows}))


if __name__ == "__main__":
    main()
