"""What the Trainer's periodic malloc_trim saves: the same pretraining (examples/pretrain-text.yaml) for a fixed
number of steps, in one process with the trim as it is ("on") or patched out ("off"), reporting peak resident
memory and wall time. Run the two side by side with one thread each, so that both share the same conditions:

    OMP_NUM_THREADS=1 python benchmarks/trim_memory.py on --steps 150 &
    OMP_NUM_THREADS=1 python benchmarks/trim_memory.py off --steps 150

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import tempfile
import time

from machine import machine

from attnkit.apps.cli import main as attnkit_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trim", choices=["on", "off"])
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    if args.trim == "off":
        importlib.import_module("attnkit.runtime").return_freed_memory = lambda: None
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        attnkit_main(
            ["pretrain", "examples/pretrain-text.yaml", "--json", "--out", f"{scratch}/model"]
            + ["--max-steps", str(args.steps), "--set", "train.max_minutes=null", "--set", "train.eval_every=100000"]
        )
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "benchmark": "trim_memory",
                "trim": args.trim,
                "steps": args.steps,
                "seconds": round(seconds, 1),
                "peak_rss_mib": round(peak),
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
