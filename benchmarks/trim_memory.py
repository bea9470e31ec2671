"""What the Trainer's handling of freed memory does: the same pretraining (examples/pretrain-text.yaml) for a fixed
number of steps, in one process with the periodic malloc_trim and the heap kept between trims as attnkit runs them
("on"), the trim patched out ("off"), or the trim kept and glibc's allocator at its adaptive defaults
("glibc-defaults": runtime.reuse_freed_memory patched out), reporting peak resident memory, wall time and page
faults. Run two side by side with one thread each, so that both share the same conditions:

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
    parser.add_argument("trim", choices=["on", "off", "glibc-defaults"])
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    if args.trim == "off":
        importlib.import_module("attnkit.runtime").return_freed_memory = lambda: None
    if args.trim == "glibc-defaults":
        importlib.import_module("attnkit.runtime").reuse_freed_memory = lambda: None
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        attnkit_main(
            ["pretrain", "examples/pretrain-text.yaml", "--json", "--out", f"{scratch}/model"]
            + ["--max-steps", str(args.steps), "--set", "train.max_minutes=null", "--set", "train.eval_every=100000"]
        )
        seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "benchmark": "trim_memory",
                "trim": args.trim,
                "steps": args.steps,
                "seconds": round(seconds, 1),
                "peak_rss_mib": round(usage.ru_maxrss / 1024),
                "page_faults": usage.ru_minflt,
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
