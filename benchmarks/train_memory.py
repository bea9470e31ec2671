"""Peak memory and speed of `attnkit train` (classify) as the training file grows: generated files of N labelled
reviews (the movie-review sentences, each followed by its row's number written digit by digit, so that no two rows
are equal and the vocabulary stays the reviews': a new word in every row would measure the tokenizer trainer's word
table, which holds every distinct word, rather than what attnkit keeps per example), each size trained in its own
process for the same few steps, reporting the peak resident memory (VmHWM), the whole command's seconds (reading,
training the tokenizer, tokenizing into the token cache, the steps) and the tokens per second of the steps.

    python benchmarks/train_memory.py [--sizes 100000 1000000 5000000] [--steps 40]

Issue 28's target: peak memory at 5M examples at most 1.2x that at 100k, and no slower per step. Prints a table,
then one JSON line. Not run by CI.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine

RUN = """
import json, sys, time
import attnkit
train, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
run = attnkit.RunConfig.from_values({
    "task": {"name": "classify"}, "out": out, "data": {"train": train, "max_length": 64},
    "tokenizer": {"vocab_size": 8000},
    "model": {"dim": 128, "num_heads": 4, "ff_dim": 512, "num_layers": 2},
    "train": {"max_steps": steps, "batch_tokens": 4096, "warmup_steps": 10, "log_every": 10},
}, "benchmark")
summary = attnkit.train(run, overwrite=True, quiet=True)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
log = [json.loads(line) for line in open(out + "/log.jsonl")]
reports = [entry for entry in log if "tokens_per_s" in entry]
print(json.dumps({"peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024, "steps": summary["steps"],
                  "tokens_per_s": sum(r["tokens_per_s"] for r in reports[1:]) / max(len(reports) - 1, 1),
                  "minutes": summary["minutes"]}))
"""


def write_examples(source: Path, count: int, out: Path) -> Path:
    with source.open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["label", "text"])
        for i in range(count):
            label, text = rows[i % len(rows)]
            writer.writerow([label, f"{text} ({' '.join(str(i))})"])
    return out


def measure(train: Path, out: Path, steps: int) -> dict:
    """One run in a process of its own: its peak memory is its alone; `seconds` is the whole command's time."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(train), str(out), str(steps)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--source", type=Path, default=Path("../shared/data/sentiment/movies.train.tsv"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            train = write_examples(args.source, size, Path(scratch) / f"train-{size}.tsv")
            result = {
                "file_mib": train.stat().st_size / 2**20,
                **measure(train, Path(scratch) / f"run-{size}", args.steps),
            }
            train.unlink()
            results[size] = result
            line = f"{size:>10,} examples  {result['file_mib']:8.1f} MiB file  peak {result['peak_rss_mib']:8,.0f} MiB"
            print(f"{line}  {result['tokens_per_s']:8,.0f} tokens/s  {result['seconds']:6.0f} s in all", flush=True)
    smallest = results[min(results)]["peak_rss_mib"]
    ratios = {size: result["peak_rss_mib"] / smallest for size, result in results.items()}
    print(json.dumps({"results": results, "peak_vs_smallest": ratios, "machine": machine()}))


if __name__ == "__main__":
    main()
