"""A busy machine: attnkit's work alone and beside one other 2-thread PyTorch process on the same cores, with
libgomp's default OpenMP waiting (300,000 spins before a waiting thread sleeps) and with attnkit's (10,000, set when
attnkit is imported: attnkit/__init__.py).

The work, in a fresh process each time: --steps training steps of benchmarks/train_speed.py's movies classifier
(float32), then 200 predictions of 8 short texts (small products, where waiting threads matter most); or, with
--demo, the whole `attnkit demo`. The other process multiplies 2,048 x 256 by 256 x 1,024 matrices and takes their
gradient in a loop, with PyTorch's default settings (it does not import attnkit). Two cores share four threads:
about 2x the idle time is the fair share.

    python benchmarks/busy_machine.py            # about 4 minutes on 2 CPU cores
    python benchmarks/busy_machine.py --demo     # about 50 minutes

Prints a table, then one JSON line. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine

HERE = Path(__file__).resolve().parent
WAITING = {"libgomp's default": "300000", "attnkit's": "10000"}
OTHER = """
import torch
x, w = torch.randn(2048, 256), torch.randn(1024, 256, requires_grad=True)
while True:
    (x @ w.t()).relu().sum().backward()
"""
WORK = """
import sys, time, tempfile
from pathlib import Path
import attnkit, torch
sys.path.insert(0, {here!r})
from train_speed import attnkit_trainer
with tempfile.TemporaryDirectory() as scratch:
    trainer = attnkit_trainer("movies", "float32", {steps}, Path(scratch) / "run")
    trainer.fit()
    model = trainer.module.eval()
    ids, mask = torch.randint(5, 100, (8, 20)), torch.ones(8, 20, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(200):
            model(ids, mask)
"""


def timed(command: list[str], spins: str) -> tuple[float, float]:
    """Wall and user CPU seconds of `command` in a fresh process with GOMP_SPINCOUNT=spins."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    started = time.perf_counter()
    subprocess.run(command, env={**env, "GOMP_SPINCOUNT": spins}, check=True, capture_output=True)
    return time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16, help="training steps of the work (default 16)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--demo", action="store_true", help="the work is `attnkit demo` (in a temporary folder)")
    args = parser.parse_args()
    results: dict[str, dict[str, list]] = {name: {"idle": [], "busy": []} for name in WAITING}
    with tempfile.TemporaryDirectory() as scratch:
        if args.demo:
            work = [sys.executable, "-m", "attnkit", "demo", "--out", str(Path(scratch) / "demo")]
        else:
            work = [sys.executable, "-c", WORK.format(here=str(HERE), steps=args.steps)]
        for _ in range(args.repeats):
            for name, spins in WAITING.items():
                results[name]["idle"].append(timed(work, spins))
                other = subprocess.Popen([sys.executable, "-c", OTHER])
                try:
                    time.sleep(2)  # the other process is multiplying
                    results[name]["busy"].append(timed(work, spins))
                finally:
                    other.kill()
                    other.wait()
    rows = []
    for name, phases in results.items():
        idle = min(wall for wall, _ in phases["idle"])
        busy = min(wall for wall, _ in phases["busy"])
        cpu = {phase: min(user for _, user in runs) for phase, runs in phases.items()}
        rows.append({"waiting": name, "spins": WAITING[name], "idle_s": round(idle, 1), "busy_s": round(busy, 1),
                     "busy_vs_idle": round(busy / idle, 2), "user_cpu_idle_s": round(cpu["idle"], 1),
                     "user_cpu_busy_s": round(cpu["busy"], 1)})  # fmt: skip
    print(f"{'OpenMP waiting':20} {'idle s':>8} {'busy s':>8} {'busy/idle':>10} {'CPU idle s':>11} {'CPU busy s':>11}")
    for r in rows:
        print(f"{r['waiting']:20} {r['idle_s']:>8} {r['busy_s']:>8} {r['busy_vs_idle']:>9}x "
              f"{r['user_cpu_idle_s']:>11} {r['user_cpu_busy_s']:>11}")  # fmt: skip
    print(json.dumps({"work": "demo" if args.demo else f"{args.steps} steps + 200 predictions", "rows": rows,
                      "machine": machine()}))  # fmt: skip


if __name__ == "__main__":
    main()
