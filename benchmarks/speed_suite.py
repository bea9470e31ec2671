"""The speed suite of issue 14 in one command: each benchmark runs in its own process, one after the other (they
would disturb each other's timings side by side), and the final JSON line of each is gathered into one.

  the machine's peak    machine.py            GFLOP/s of PyTorch's default product and oneDNN's, float32 and bf16
  training throughput   train_speed.py        attnkit train vs a transformers loop, movies and en-es, fp32/bf16
  a training step       train_profile.py      where each side's step spends its time; its products' GFLOP/s
  generation            generate_speed.py     vs transformers generate and CTranslate2, float32 and int8
  a compiled one-off    compiled_generate.py  10 lines generated, eager vs torch.compile (compile time counted)
  parallel encoding     parallel_encoding.py  encoder vs an LSTM of equal size, 32...1,024 tokens
  memory                encoder_step.py       peak memory of a training step at 512 tokens vs BertModel
  attention paths       attention_paths.py    SDPA vs the explicit path, the measurement behind attnkit's choice
  a busy machine        busy_machine.py       alone vs beside another 2-thread PyTorch process, two OpenMP waits
  int8 and ONNX         int8.py, onnx_export.py   on trained models: only with --sentiment / --translation

    pip install -c constraints.txt -e '.[bench,onnx]'
    python benchmarks/speed_suite.py --quick                 # about 20 minutes on 2 CPU cores
    python benchmarks/speed_suite.py                         # about an hour
    python benchmarks/speed_suite.py --sentiment runs/sentiment --translation runs/en-es   # with int8 and ONNX

Each benchmark's own table goes to the terminal as it runs; the last line is one JSON object, benchmark name ->
that benchmark's JSON line. A benchmark that fails is reported and the suite goes on; the exit status is 1 then.
Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"


def plan(args: argparse.Namespace) -> dict[str, list[str]]:
    quick = ["--quick"] if args.quick else []
    benchmarks = {
        "machine": ["machine.py"],
        "train_speed": ["train_speed.py", "--data", str(args.data), *quick],
        "train_profile": ["train_profile.py", "--data", str(args.data), "--side", "both"],
        "generate_speed": ["generate_speed.py", *quick],
        "compiled_generate": ["compiled_generate.py", "--rounds", "1" if args.quick else "2"],
        "parallel_encoding": ["parallel_encoding.py", *quick],
        "memory_512": ["encoder_step.py", "--time", "512", "--batch", "8", "--steps", "3" if args.quick else "10"],
        "attention_paths": ["attention_paths.py", "--repeats", "3" if args.quick else "10"],
        "busy_machine": ["busy_machine.py", "--repeats", "1" if args.quick else "2"],
    }
    repeats = ["--repeats", "1" if args.quick else "3"]
    if args.sentiment:
        test = str(args.data / "sentiment" / "movies.test.tsv")
        benchmarks["int8_sentiment"] = ["int8.py", args.sentiment, "--data", test, *repeats]
        benchmarks["onnx_sentiment"] = ["onnx_export.py", args.sentiment, "--data", test, *repeats]
    if args.translation:
        test = str(args.data / "translation" / "en-es.bible.test.tsv")
        benchmarks["int8_translation"] = ["int8.py", args.translation, "--data", test, "--repeats", "1"]
        benchmarks["onnx_translation"] = ["onnx_export.py", args.translation, "--data", test, "--repeats", "1"]
    return benchmarks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="each benchmark's quick setting")
    parser.add_argument("--sentiment", metavar="DIR", help="a trained movies classifier: int8 and ONNX on its test set")
    parser.add_argument("--translation", metavar="DIR", help="a trained en-es model: int8 and ONNX on its test set")
    parser.add_argument("--data", type=Path, default=DATA, help=f"the shared data folder (default {DATA})")
    args = parser.parse_args()
    results, failed = {}, []
    for name, command in plan(args).items():
        print(f"\n=== {name}: python benchmarks/{' '.join(command)}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], capture_output=True, text=True)
        sys.stdout.write(done.stdout)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            failed.append(name)
            print(f"{name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}", flush=True)
            continue
        results[name] = json.loads(lines[-1])
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    print(json.dumps(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
