"""LoRA against full fine-tuning, the same run configuration, data, seed and steps: the weights that train, peak
memory, training tokens/s, the checkpoint on disk and the test figures, side by side with their ratios
(docs/benchmarks.md, "LoRA").

    python benchmarks/lora.py examples/sentiment-mpnet.yaml --init MPNET --lr 5e-4            # whole runs
    python benchmarks/lora.py examples/sentiment-mpnet.yaml --init MPNET --lr 5e-4 --steps 40  # speed, memory

With --steps, each side trains that many steps without dev or test data, --rounds times (default twice), the two
sides alternating (this machine's speed drifts; the ratio of neighbours does not), and the table gives the median
of each. Without it, each
side runs once, whole, as the configuration says; --full RUN reuses a full fine-tuning already run (its summary
in RUN/summary.json, as this script writes it) instead of running it again. Runs go to --out (default
runs/bench-lora).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import safetensors


def train(config: str, init: str, out: Path, extra: list[str]) -> dict:
    """One `attnkit train` in its own process (its peak memory is its own); its summary, with the speed its log
    recorded and what its checkpoint holds."""
    command = [sys.executable, "-m", "attnkit", "train", config, "--init", init, "--out", str(out), "--overwrite"]
    done = subprocess.run([*command, "--json", *extra], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command + extra)} failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r][1:]  # the first report holds the warmup
    with safetensors.safe_open(str(out / "model.safetensors"), framework="pt") as weights:
        saved = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    summary.update(tokens_per_s=statistics.mean(speeds), saved=saved, bytes=(out / "model.safetensors").stat().st_size)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def table(full: dict, lora: dict, rank: int) -> str:
    rows = [
        ("weights that train", f"{full['saved']:,.0f}", f"{lora['saved']:,.0f}", lora["saved"] / full["saved"]),
        ("peak memory (MiB)", f"{full['peak_memory_mib']:,.0f}", f"{lora['peak_memory_mib']:,.0f}",
         lora["peak_memory_mib"] / full["peak_memory_mib"]),
        ("training tokens/s", f"{full.get('tokens_per_s') or 0:,.0f}", f"{lora['tokens_per_s']:,.0f}",
         lora["tokens_per_s"] / full["tokens_per_s"] if full.get("tokens_per_s") else None),
        ("checkpoint on disk (MB)", f"{full['bytes'] / 1e6:,.1f}", f"{lora['bytes'] / 1e6:,.2f}",
         lora["bytes"] / full["bytes"]),
        ("minutes", f"{full['minutes']:.1f}", f"{lora['minutes']:.1f}", lora["minutes"] / full["minutes"]),
    ]  # fmt: skip
    for split in ("dev", "test"):
        for metric in (full.get(split) or {}).keys() & (lora.get(split) or {}).keys():
            a, b = full[split][metric], lora[split][metric]
            rows.append((f"{split} {metric}", f"{a:.4f}", f"{b:.4f}", b - a))
    lines = [f"| measure | full fine-tuning | LoRA rank {rank} | LoRA / full |", "|---|---|---|---|"]
    for name, a, b, ratio in rows:
        if ratio is None:  # a reused full run that recorded no speed
            a, said = "n/a", "n/a"
        else:
            said = f"{ratio:+.4f} (difference)" if name.startswith(("dev", "test")) else f"{ratio:.3f}x"
        lines.append(f"| {name} | {a} | {b} | {said} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="the run configuration both sides train with")
    parser.add_argument("--init", required=True, help="the checkpoint both fine-tune")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, required=True, help="LoRA's learning rate (full takes the config's)")
    parser.add_argument("--steps", type=int, help="speed and memory alone: this many steps a side, alternating")
    parser.add_argument("--rounds", type=int, default=2, help="with --steps: runs of each side (default 2)")
    parser.add_argument("--full", metavar="RUN", help="a full fine-tuning already run by this script, reused")
    parser.add_argument("--out", default="runs/bench-lora")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for both sides")
    args = parser.parse_args()
    out = Path(args.out)
    both = [f"--set={setting}" for setting in args.set]
    full_side = [*both, "--set=train.lora.rank=0"]  # whatever the configuration says: every weight trains
    lora = [*both, f"--set=train.lora.rank={args.rank}", f"--set=train.lr={args.lr}"]
    if args.steps:
        short = [f"--max-steps={args.steps}", "--set=data.dev=null", "--set=data.test=null", "--set=train.log_every=5"]
        runs: dict[str, list[dict]] = {"full": [], "lora": []}
        for round in range(args.rounds):
            for side, extra in (("full", full_side), ("lora", lora)):
                runs[side].append(train(args.config, args.init, out / f"{side}-{round}", [*short, *extra]))
        full, adapted = ({k: _median([r[k] for r in runs[s]]) for k in runs[s][0]} for s in ("full", "lora"))
    else:
        if args.full:
            full = json.loads((Path(args.full) / "summary.json").read_text())
        else:
            full = train(args.config, args.init, out / "full", full_side)
        adapted = train(args.config, args.init, out / "lora", lora)
    print(table(full, adapted, args.rank))


def _median(values: list) -> object:
    return statistics.median(values) if all(isinstance(v, (int, float)) for v in values) else values[0]


if __name__ == "__main__":
    main()
