"""The one command for the day a GPU is there: runs the test suite with CUDA as the default device, then a short
training benchmark (tokens/s and model-FLOPs utilization, float32 and bfloat16), then the serving load test
(benchmarks/serve_load.py, micro-batching on vs off) on the GPU, then generation against transformers and CTranslate2
(benchmarks/generate_speed.py --device cuda, which needs the bench extra and CTranslate2's CUDA build), then, with
two GPUs or more, benchmarks/ddp.py.
Prints what it measured and a final JSON line.

    python benchmarks/gpu_check.py                 # on a CUDA machine: tests + benchmark, ~10 minutes
    python benchmarks/gpu_check.py --skip-tests    # the benchmark alone
    python benchmarks/gpu_check.py --device cpu --skip-tests --steps 5   # the script's own check, anywhere

Model FLOPs per trained token follow the PaLM paper's appendix B: 6 x (non-embedding parameters) plus
12 x layers x dim x (mean sequence length) for attention; utilization divides the FLOPs achieved by the device's
dense bfloat16 peak (from the table below for known GPUs, else a large matrix product measured here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import machine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sentiment" / "movies.train.tsv"  # --data
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}
SHAPE = {"num_layers": 6, "dim": 512, "num_heads": 8, "ff_dim": 2048}  # Marian base's encoder


def tests(device: str) -> int:
    """The whole suite, with `auto` resolving to the GPU (train.device and --device default to auto)."""
    print(f"== test suite on {device}", flush=True)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")]
    ).returncode


def peak_flops(device: torch.device) -> float:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    known = next((flops for gpu, flops in PEAK_BF16.items() if gpu in name), None)
    if known:
        return known
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    started, repeats = time.perf_counter(), 20
    for _ in range(repeats):
        a @ a
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - started)


def training(device: str, precision: str, steps: int, data: Path, scratch: Path) -> dict:
    """tokens/s of `attnkit train` on the movie sentences (the loop's median report), and the model's size."""
    out = scratch / precision
    settings = [f"model.{k}={v}" for k, v in SHAPE.items()]
    settings += ["tokenizer.vocab_size=8000", "train.batch_tokens=16384", "train.warmup_steps=10"]
    settings += [f"train.precision={precision}", "train.eval_every=1000000", f"train.log_every={max(steps // 5, 1)}"]
    command = [sys.executable, "-m", "attnkit", "train", "--task", "classify", "--train", str(data), "--out", str(out)]
    command += ["--device", device, "--max-steps", str(steps), *(f"--set={s}" for s in settings)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"gpu_check: the training run failed:\n{done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
    import attnkit

    model = attnkit.load(out, device="cpu").model
    embedding = sum(p.numel() for name, p in model.named_parameters() if "embedding" in name or "positions" in name)
    parameters = sum(p.numel() for p in model.parameters()) - embedding
    lengths = [len(line.split("\t", 1)[-1].split()) * 1.3 for line in data.read_text().splitlines()[1:]]
    flops_per_token = 6 * parameters + 12 * SHAPE["num_layers"] * SHAPE["dim"] * statistics.mean(lengths)
    return {"tokens_per_s": statistics.median(speeds[1:] or speeds), "flops_per_token": flops_per_token}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--data", type=Path, default=DATA, help="labelled sentences (TSV with label and text)")
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"gpu_check: {args.data}: no such file; pass --data (a TSV of label and text)", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA GPU here (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    result: dict = {
        "machine": machine(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    if not args.skip_tests:
        result["tests_returncode"] = tests(args.device)
    peak = peak_flops(device)
    result["peak_bf16_flops"] = peak
    print(f"== training benchmark on {result['device']} (peak bf16 {peak / 1e12:,.1f} TFLOP/s)", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for precision in ("float32", "bfloat16"):
            measured = training(args.device, precision, args.steps, args.data, Path(scratch))
            utilization = measured["tokens_per_s"] * measured["flops_per_token"] / peak
            result[precision] = {**measured, "mfu": utilization}
            print(f"{precision:<9} {measured['tokens_per_s']:>12,.0f} tokens/s   MFU {utilization:.1%}", flush=True)
    print("== serving: benchmarks/serve_load.py on the same device", flush=True)
    serving = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), "--device", args.device, "--seconds", "5"],
        capture_output=True,
        text=True,
    )
    print(serving.stdout, end="")
    result["serving"] = (
        json.loads(serving.stdout.strip().splitlines()[-1]) if serving.returncode == 0 else serving.stderr[-2000:]
    )
    print(
        "== generation: benchmarks/generate_speed.py on the same device (attnkit, transformers, CTranslate2)",
        flush=True,
    )
    generation = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "generate_speed.py"), "--device", args.device, "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT / "benchmarks",
    )
    print(generation.stdout, end="")
    result["generation"] = (
        json.loads(generation.stdout.strip().splitlines()[-1])
        if generation.returncode == 0
        else generation.stderr[-2000:]
    )
    if device.type == "cuda" and torch.cuda.device_count() > 1:
        ddp = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "ddp.py"), "--quick"], capture_output=True, text=True
        )
        print(ddp.stdout, end="")
        result["ddp"] = json.loads(ddp.stdout.strip().splitlines()[-1]) if ddp.returncode == 0 else ddp.stderr[-2000:]
    print(json.dumps(result))
    return 1 if result.get("tests_returncode") else 0


if __name__ == "__main__":
    sys.exit(main())
