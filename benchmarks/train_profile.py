"""Where a training step of each benchmark workload spends its time (torch.profiler), and at what GFLOP/s its matrix
products run against the machine's measured peak (benchmarks/machine.py).

The workloads are benchmarks/train_speed.py's (movies: an encoder classifier; en-es: an encoder-decoder), trained by
attnkit's own Trainer with its defaults. After --warmup steps, --steps steps are profiled. Each operator's own time
(children left out) is put in one of these classes: matrix products (aten::mm, addmm, bmm, oneDNN's linear), the
fused attention kernel (scaled_dot_product_attention, forward and backward), the optimizer (AdamW and the
gradient's clipping), and the rest (element-wise passes: dropout, norms, activations, copies). A product's
floating-point operations come from its input shapes (2 m k n), so the GFLOP/s are those of the products alone.

    python benchmarks/train_profile.py                      # both workloads, float32 and bfloat16: ~3 minutes
    python benchmarks/train_profile.py --workload movies --precision float32 --top 25

Prints a table per run, then one JSON line; several runs each run in a process of their own. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from machine import machine, peak
from train_speed import DATA, WORKLOADS, attnkit_trainer, run_hf

PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "mkldnn::_linear_pointwise"}
OPTIMIZER_MARKS = ("Optimizer.step", "clip_grad", "_foreach_")


def product_flops(name: str, shapes: list) -> int:
    """2 m k n of one product from its recorded input shapes (0 where they are not recorded)."""
    try:
        if name in ("aten::mm", "aten::bmm"):
            a, b = shapes[0], shapes[1]
        elif name in ("aten::addmm", "aten::baddbmm"):
            a, b = shapes[1], shapes[2]
        else:  # oneDNN linear: x (..., k), w (n, k) or packed
            a, b = shapes[0], shapes[1][::-1]
        batch = math.prod(a[:-2]) if name in ("aten::bmm", "aten::baddbmm") else math.prod(a[:-1])
        return 2 * batch * (a[-2] if name in ("aten::bmm", "aten::baddbmm") else 1) * a[-1] * b[-1]
    except (IndexError, TypeError):
        return 0


def _shapes_and_layout(event) -> str:
    """The product's input shapes with their strides' order (t: a transposed view), rows rounded to 256 (padded
    batches vary in length) so that one layer's products group together."""
    parts = []
    for shape, stride in zip(event.input_shapes, getattr(event, "input_strides", None) or [[]] * 9):
        if not shape:
            continue
        rounded = [-(-d // 256) * 256 if d > 1024 and i == 0 else d for i, d in enumerate(shape)]
        transposed = len(stride) >= 2 and stride[-1] != 1
        parts.append("x".join(map(str, rounded)) + ("t" if transposed else ""))
    return " ".join(parts)


def classify(event, optimizer_ids: set) -> str:
    if event.name in PRODUCTS:
        return "products"
    if "scaled_dot_product" in event.name or "flash_attention" in event.name:
        return "attention kernel"
    if event.id in optimizer_ids:
        return "optimizer"
    return "element-wise and rest"


def profile(workload: str, precision: str, warmup: int, steps: int, top: int, out: Path, side: str) -> dict:
    trainer = attnkit_trainer(workload, precision, warmup + steps, out)
    schedule = torch.profiler.schedule(wait=0, warmup=warmup, active=steps, repeat=1)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], schedule=schedule,
                                record_shapes=True) as profiler:  # fmt: skip
        if side == "transformers":
            run_hf(workload, trainer, precision, warmup + steps, after_step=profiler.step)
        else:
            original = trainer._step

            def step_and_mark(*args, **kwargs):
                original(*args, **kwargs)
                profiler.step()

            trainer._step = step_and_mark
            trainer.fit()
    events = profiler.events()
    steps_total = sum(e.cpu_time_total for e in events if e.name.startswith("ProfilerStep"))
    # everything under an optimizer or clipping range counts as the optimizer's
    marks = [e for e in events if any(m in e.name for m in OPTIMIZER_MARKS[:2])]
    optimizer_ids = set()
    for mark in marks:
        stack = list(mark.cpu_children)
        while stack:
            child = stack.pop()
            optimizer_ids.add(child.id)
            stack.extend(child.cpu_children)
    classes, flops, by_op = defaultdict(float), 0, defaultdict(float)
    by_shape: dict[tuple, list] = defaultdict(lambda: [0.0, 0])  # (op, shapes) -> [seconds, flops]
    for e in events:
        if e.name.startswith("ProfilerStep") or e.name in ("Optimizer.step#AdamW.step",):
            continue
        kind = classify(e, optimizer_ids)
        classes[kind] += e.self_cpu_time_total
        by_op[e.name] += e.self_cpu_time_total
        if kind == "products":
            flops += product_flops(e.name, e.input_shapes)
            shape = by_shape[e.name, _shapes_and_layout(e)]
            shape[0] += e.self_cpu_time_total / 1e6
            shape[1] += product_flops(e.name, e.input_shapes)
    product_seconds = classes["products"] / 1e6
    gflops = flops / product_seconds / 1e9 if product_seconds else 0.0
    machine_peak = peak()["bfloat16" if precision == "bfloat16" else "float32"]["peak"]
    result = {
        "side": side,
        "workload": workload,
        "precision": precision,
        "step_ms": round(steps_total / steps / 1e3, 1),
        "shares": {k: round(v / steps_total, 3) for k, v in sorted(classes.items(), key=lambda kv: -kv[1])},
        "products_gflops": round(gflops, 1),
        "peak_gflops": machine_peak,
        "share_of_peak": round(gflops / machine_peak, 3),
        "products_by_shape": [
            (f"{name} {shapes}", round(seconds / (steps_total / 1e6), 3), round(f / seconds / 1e9) if seconds else 0)
            for (name, shapes), (seconds, f) in sorted(by_shape.items(), key=lambda kv: -kv[1][0])[:top]
        ],
        "top": [(name, round(t / steps_total, 3)) for name, t in sorted(by_op.items(), key=lambda kv: -kv[1])[:top]],
    }
    print(f"\n{side} {workload} {precision}: {result['step_ms']:,} ms a step; products at {gflops:,.0f} GFLOP/s = "
          f"{result['share_of_peak']:.0%} of the peak ({machine_peak:,.0f})", file=sys.stderr)  # fmt: skip
    for kind, share in result["shares"].items():
        print(f"  {kind:24} {share:6.1%}", file=sys.stderr)
    print("  products by shape (share of the step, GFLOP/s):", file=sys.stderr)
    for name, share, speed in result["products_by_shape"]:
        print(f"    {name:70} {share:6.1%} {speed:5}", file=sys.stderr)
    print("  operators by own time:", file=sys.stderr)
    for name, share in result["top"]:
        print(f"    {name:48} {share:6.1%}", file=sys.stderr)
    return result


def profile_in_process(args: argparse.Namespace, workload: str, precision: str, side: str) -> dict:
    """profile() in a process of its own: attnkit's Trainer sets the process's allocator (runtime.reuse_freed_memory),
    which a run after it in the same process would inherit. Its tables go to this process's stderr."""
    command = [sys.executable, __file__, "--workload", workload, "--precision", precision, "--side", side]
    command += ["--warmup", str(args.warmup), "--steps", str(args.steps), "--top", str(args.top)]
    command += ["--data", str(args.data)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{side} {workload} {precision} failed")
    return json.loads(done.stdout.splitlines()[-1])["results"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--precision", choices=["float32", "bfloat16", "both"], default="both")
    parser.add_argument("--warmup", type=int, default=4, help="steps before the profiled ones (default 4)")
    parser.add_argument("--steps", type=int, default=8, help="profiled steps (default 8)")
    parser.add_argument("--top", type=int, default=12, help="operators listed by own time (default 12)")
    parser.add_argument("--side", choices=["attnkit", "transformers", "both"], default="attnkit")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    precisions = ["float32", "bfloat16"] if args.precision == "both" else [args.precision]
    sides = ["attnkit", "transformers"] if args.side == "both" else [args.side]
    runs = [(workload, precision, side) for workload in workloads for precision in precisions for side in sides]
    if len(runs) > 1:
        results = [profile_in_process(args, *run) for run in runs]
    else:
        with tempfile.TemporaryDirectory() as scratch:
            [(workload, precision, side)] = runs
            results = [profile(workload, precision, args.warmup, args.steps, args.top, Path(scratch) / workload, side)]
    print(json.dumps({**machine(), "peak_gflops": peak(), "results": results}))


if __name__ == "__main__":
    main()
