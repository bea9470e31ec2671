"""Does a second process add throughput? The same training (movie-review sentences, an encoder classifier of 4
layers, dim 256, batches of up to 4,096 tokens, no evaluation) run as

  CPU:  1 process x 2 threads   vs   2 processes x 1 thread (torchrun, gloo)
  GPU:  1 process on 1 GPU      vs   N processes on N GPUs (torchrun, nccl; N = the GPUs there are)

alternately, `--repeats` times each; the unit is real (non-padding) tokens per second of the whole run, the
median of the loop's own reports after the first. Scaling efficiency = throughput(N) / (N x throughput(1)): on
GPUs data parallelism should give at least 0.8; on two CPU cores it shows what the processes' all-reduce costs
against the threads' own parallelism. Prints a table and a final JSON line. Not run by CI.

    python benchmarks/ddp.py            # about 10 minutes on 2 CPU cores
    python benchmarks/ddp.py --quick    # about 3 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from machine import machine

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sentiment" / "movies.train.tsv"  # --data
SETTINGS = [
    "model.dim=256",
    "model.num_heads=4",
    "model.ff_dim=1024",
    "model.num_layers=4",
    "tokenizer.vocab_size=8000",
    "train.batch_tokens=4096",
    "train.warmup_steps=10",
    "train.patience=null",
    "train.eval_every=1000000",  # no evaluation inside the measured steps
]


def run(processes: int, threads: int, steps: int, device: str, data: Path, scratch: Path) -> float:
    """Median tokens/s of one training run of `steps` steps."""
    out = scratch / f"run{processes}x{threads}"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*(launcher if processes > 1 else [sys.executable]), "-m", "attnkit", "train", "--task", "classify"]
    command += ["--train", str(data), "--out", str(out), "--overwrite", "--device", device, "--max-steps", str(steps)]
    command += [f"--set={s}" for s in [*SETTINGS, f"train.log_every={max(steps // 6, 1)}"]]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode != 0:
        sys.exit(f"ddp.py: the run failed:\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
    return statistics.median(speeds[1:] or speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 60, quick 24)")
    parser.add_argument("--repeats", type=int, help="runs per contender, alternating (default 3, quick 1)")
    parser.add_argument("--data", type=Path, default=DATA, help="labelled sentences (TSV with label and text)")
    args = parser.parse_args()
    steps = args.steps or (24 if args.quick else 60)
    repeats = args.repeats or (1 if args.quick else 3)
    if torch.cuda.is_available():
        device, world = "cuda", torch.cuda.device_count()
        contenders = {"1 process, 1 GPU": (1, 1), f"{world} processes, {world} GPUs": (world, 1)}
    else:
        device, world = "cpu", 2
        contenders = {"1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}
    results: dict[str, list[float]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(repeats):
            for name, (processes, threads) in contenders.items():
                results[name].append(run(processes, threads, steps, device, args.data, Path(scratch)))
    single, multiple = (statistics.median(v) for v in results.values())
    print(f"{'contender':<26} {'tokens/s (median)':>18}   runs")
    for name, speeds in results.items():
        print(f"{name:<26} {statistics.median(speeds):>18,.0f}   {', '.join(f'{s:,.0f}' for s in speeds)}")
    ratio = multiple / single
    efficiency = ratio / world if device == "cuda" else ratio  # on 2 cores both contenders use the 2 cores
    print(f"ratio {ratio:.2f}; scaling efficiency {efficiency:.2f}")
    summary = {"device": device, "world": world, "steps": steps, "repeats": repeats, "ratio": round(ratio, 3)}
    print(json.dumps({**summary, "efficiency": round(efficiency, 3), "machine": machine(), "results": results}))


if __name__ == "__main__":
    main()
