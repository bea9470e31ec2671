"""Memory of `attnkit pretrain` stays flat as the corpus grows: the same pretraining on the shared text, once as
it is and once repeated ten times (ten copies of every file), each in its own process, reporting the peak
resident memory (VmHWM) and the time spent turning text into token files.

    python benchmarks/pretrain_memory.py [--text ../shared/data/text] [--copies 10] [--steps 50]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = """
import json, sys, time
import attnkit
from attnkit.training.corpus import prepare_corpus, text_files
text, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
run = attnkit.RunConfig.from_values({
    "task": {"name": "pretrain"}, "out": out, "data": {"train": text, "max_length": 128},
    "tokenizer": {"vocab_size": 8000},
    "model": {"arch": "encoder", "dim": 256, "num_heads": 4, "ff_dim": 1024, "num_layers": 4},
    "train": {"max_steps": steps, "eval_every": steps, "batch_tokens": 4096, "warmup_steps": 10},
}, "benchmark")
started = time.perf_counter()
files = {"train": text_files(text)}
prepare_corpus(files, run, __import__("pathlib").Path(out + ".corpus"))
tokenize = time.perf_counter() - started
summary = attnkit.pretrain(run, overwrite=True, quiet=True)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({"tokenize_seconds": tokenize, "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024,
                  "steps": summary["steps"], "dev_perplexity": summary["dev"]["perplexity"]}))
"""


def measure(text: Path, out: Path, steps: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(text), str(out), str(steps)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, default=Path("../shared/data/text"))
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    files = sorted(args.text.glob("*.txt"))
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        repeated = scratch / "repeated"
        repeated.mkdir()
        for copy in range(args.copies):
            for file in files:
                (repeated / f"{copy}-{file.name}").symlink_to(file.resolve())
        for name, text in (("1x", args.text), (f"{args.copies}x", repeated)):
            size = sum(f.stat().st_size for f in text.glob("*.txt"))
            results[name] = {"corpus_mib": size / 2**20, **measure(text, scratch / f"model-{name}", args.steps)}
    print(f"attnkit pretrain, {args.steps} steps of the same encoder on the shared text and on {args.copies} copies")
    print(f"{'corpus':<7} {'MiB':>8} {'tokenize s':>11} {'peak RSS MiB':>13}")
    for name, r in results.items():
        print(f"{name:<7} {r['corpus_mib']:>8.1f} {r['tokenize_seconds']:>11.1f} {r['peak_rss_mib']:>13.0f}")
    big, small = results[f"{args.copies}x"], results["1x"]
    print(f"peak memory ratio {args.copies}x / 1x: {big['peak_rss_mib'] / small['peak_rss_mib']:.2f}")
    print(json.dumps({"benchmark": "pretrain_memory", **results}))


if __name__ == "__main__":
    main()
