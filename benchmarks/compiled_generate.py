"""A one-off generation, compiled or not: what torch.compile of the decoder costs a command that translates 10 lines.

The model is benchmarks/generate_speed.py's (a random BART of Marian-base size, read through attnkit's Hugging Face
import). Each round loads it, translates 10 sources greedily, 32 new tokens each, and is timed whole: eager, then
with `torch.compile(model.decoder, dynamic=True)` (inductor, compile time included), after `torch._dynamo.reset()`
so that each compiled round compiles afresh as a new `attnkit generate` process would. attnkit compiles nothing when
it generates; this is the measurement behind that choice.

    python benchmarks/compiled_generate.py [--rounds 2]

Prints the seconds of each round, then one JSON line. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from generate_speed import EOS, PAD, sources, write_model
from machine import machine

import attnkit
from attnkit.data.batching import pad
from attnkit.nn.decoding import generate


def one_off(folder: Path, compiled: bool) -> float:
    torch._dynamo.reset()
    began = time.perf_counter()
    model = attnkit.load(folder, engine="torch").model
    if compiled:
        model.decoder = torch.compile(model.decoder, dynamic=True)
    ids, mask = pad(sources(10), PAD)
    generate(model, ids, mask, start_id=EOS, eos_id=EOS, max_new_tokens=32, suppress=[EOS])
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_model(Path(scratch) / "bart")
        for _ in range(args.rounds):
            for name in times:
                times[name].append(one_off(folder, name == "compiled"))
                print(f"{name:>9}: {times[name][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(spent) for name, spent in times.items()}
    print(json.dumps({"seconds": times, "compiled_vs_eager": round(medians["compiled"] / medians["eager"], 1),
                      "machine": machine()}))  # fmt: skip


if __name__ == "__main__":
    main()
