"""Training throughput on real, variable-length data: `attnkit train` against a transformers training loop with
its own recommended batching, the same architecture, the same token ids.

Two workloads, each in float32 and in bfloat16 autocast:
  movies   movie-review sentiment (8,568 sentences): an encoder classifier of 4 layers, dim 256, 4 heads,
           feed-forward 1024 (model.preset bert) against BertForSequenceClassification of that shape;
  en-es    English -> Spanish Bible verses (28,084 pairs): an encoder-decoder of 3 + 3 layers, dim 256, 4 heads,
           feed-forward 1024 (model.preset bart) against BartForConditionalGeneration of that shape.

attnkit runs its real training loop (`attnkit.training.loop.Trainer`, the code `attnkit train` runs) with its defaults:
batches of up to 4,096 tokens (padding included), examples sorted by length. transformers gets the batching its
Trainer recommends for such data, `group_by_length` (its LengthGroupedSampler) with `DataCollatorWithPadding`
(movies) or `DataCollatorForSeq2Seq` (en-es), at a batch size of the mean number of examples in attnkit's batches,
so that both take the same number of optimizer steps per epoch; it reads the ids attnkit's tokenizer made, so the
real tokens are the same. Both use AdamW with gradient clipping at 1.0 and cross-entropy with label smoothing 0.1,
dropout 0.1. The plain loop on the transformers side leaves out its Trainer's own overhead (logging, callbacks):
the comparison favours transformers.

Unit: real (non-padding) tokens per second, source + target for en-es. Each contender trains --steps steps per
repeat; the contenders alternate, --repeats times. A run's speed is the median of its sixths (the first left out
as warm-up); the table shows the median speed of each side and the median of the repeats' ratios. Each run is a
process of its own, as each library's users run it: attnkit's Trainer sets the process's memory allocator
(runtime.reuse_freed_memory), which a transformers loop run after it in the same process would inherit.

    python benchmarks/train_speed.py            # about 15 minutes on 2 CPU cores
    python benchmarks/train_speed.py --quick    # about 4 minutes

Prints a table, then one JSON line. Not run by CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import machine

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WORKLOADS = {
    "movies": {
        "task": "classify",
        "train": "sentiment/movies.train.tsv",
        "settings": ["model.preset=bert", "model.num_layers=4", "tokenizer.vocab_size=8000"],
    },
    "en-es": {
        "task": "seq2seq",
        "train": "translation/en-es.bible.train.tsv",
        "settings": ["model.preset=bart", "model.num_layers=3", "tokenizer.vocab_size=10000"],
    },
}
COMMON = [
    "model.dim=256",
    "model.num_heads=4",
    "model.ff_dim=1024",
    "model.dropout=0.1",
    "train.warmup_steps=10",
    "train.patience=null",
    "train.eval_every=1000000",  # no evaluation inside the measured steps
]


def attnkit_trainer(workload: str, precision: str, steps: int, out: Path, data: Path = DATA):
    """attnkit's own Trainer for `steps` steps of `workload`, built (tokenizer trained, data encoded)."""
    from attnkit import RunConfig, runtime
    from attnkit.training.loop import Trainer

    spec = WORKLOADS[workload]
    overrides = [*COMMON, *spec["settings"], f"train.precision={precision}", f"train.max_steps={steps}"]
    overrides += [f"train.log_every={max(steps // 6, 1)}", f"data.train={data / spec['train']}", f"out={out}"]
    run = RunConfig.from_values({"task": {"name": spec["task"]}}, "train_speed", overrides)
    return Trainer(run, torch.device("cpu"), runtime.Processes(), resume=False, overwrite=True, quiet=True)


def run_attnkit(trainer) -> float:
    """Median tokens/s of the Trainer's own reports after the first."""
    trainer.fit()
    records = [json.loads(line) for line in (trainer.out / "log.jsonl").read_text().splitlines()]
    speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
    return statistics.median(speeds[1:] or speeds)


def hf_model(workload: str, trainer) -> torch.nn.Module:
    """The transformers model of the same shape as the attnkit one."""
    config, tokenizer = trainer.module.config, trainer.tokenizer
    torch.manual_seed(0)
    if workload == "movies":
        from transformers import BertConfig, BertForSequenceClassification

        return BertForSequenceClassification(
            BertConfig(
                vocab_size=config.vocab_size,
                hidden_size=config.dim,
                num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads,
                intermediate_size=config.ff_dim,
                max_position_embeddings=config.max_positions,
                hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=config.attention_dropout,
                pad_token_id=tokenizer.pad_id,
                num_labels=len(trainer.task.labels),
            )
        )
    from transformers import BartConfig, BartForConditionalGeneration

    return BartForConditionalGeneration(
        BartConfig(
            vocab_size=config.vocab_size,
            d_model=config.dim,
            encoder_layers=config.num_layers,
            decoder_layers=config.decoder_layers,
            encoder_attention_heads=config.num_heads,
            decoder_attention_heads=config.num_heads,
            encoder_ffn_dim=config.ff_dim,
            decoder_ffn_dim=config.ff_dim,
            max_position_embeddings=config.max_positions,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            activation_dropout=0.0,
            pad_token_id=tokenizer.pad_id,
            bos_token_id=tokenizer.bos_id,
            eos_token_id=tokenizer.eos_id,
            decoder_start_token_id=trainer.train_items[0]["target"][0],
            scale_embedding=config.scale_embeddings,
        )
    )


def hf_features(workload: str, trainer) -> list[dict]:
    """attnkit's encoded training items as transformers features (the same ids)."""
    if workload == "movies":
        return [{"input_ids": item["ids"], "label": item["label"]} for item in trainer.train_items]
    # BART's labels are the target without the start token; the model shifts them right to read them
    return [{"input_ids": item["source"], "labels": item["target"][1:]} for item in trainer.train_items]


def hf_collator(workload: str, trainer, model: torch.nn.Module):
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, PreTrainedTokenizerFast

    tokenizer = trainer.tokenizer
    pad_token = tokenizer.backend.id_to_token(tokenizer.pad_id)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, pad_token=pad_token)
    if workload == "movies":
        return DataCollatorWithPadding(wrapped)
    return DataCollatorForSeq2Seq(wrapped, model=model)


def run_hf(workload: str, trainer, precision: str, steps: int, after_step=None) -> float:
    """Median tokens/s of a transformers loop of `steps` steps, measured in sixths like attnkit's reports
    (`after_step`, if given, is called after each: benchmarks/train_profile.py marks its steps)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    model = hf_model(workload, trainer)
    model.train()
    features = hf_features(workload, trainer)
    collator = hf_collator(workload, trainer, model)
    sizes = trainer.sizes.reshape(len(trainer.sizes), -1).sum(1).tolist()  # seq2seq: target + source
    batch_size = round(len(sizes) / trainer.plan.steps_per_epoch)
    sampler = LengthGroupedSampler(batch_size, lengths=sizes, generator=torch.Generator().manual_seed(1))
    order = list(sampler)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    loss_function = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bfloat16" else contextlib.nullcontext()
    chunk = max(steps // 6, 1)
    speeds, tokens, started = [], 0, time.perf_counter()
    for step in range(steps):
        start = (step * batch_size) % len(order)
        indices = order[start : start + batch_size] or order[:batch_size]
        batch = collator([features[i] for i in indices])
        labels = batch.pop("labels")
        with autocast:
            logits = model(**batch).logits
        loss = loss_function(logits.float().flatten(0, -2), labels.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += sum(sizes[i] for i in indices)
        if after_step is not None:
            after_step()
        if (step + 1) % chunk == 0:
            speeds.append(tokens / (time.perf_counter() - started))
            tokens, started = 0, time.perf_counter()
    return statistics.median(speeds[1:] or speeds)


def run_side(side: str, workload: str, precision: str, steps: int, out: Path, data: Path) -> dict:
    """One run of one contender, in this process: its tokens/s and transformers' batch size."""
    trainer = attnkit_trainer(workload, precision, steps, out, data)
    speed = run_attnkit(trainer) if side == "attnkit" else run_hf(workload, trainer, precision, steps)
    return {"tokens_per_s": speed, "hf_batch": round(len(trainer.sizes) / trainer.plan.steps_per_epoch)}


def run_in_process(side: str, workload: str, precision: str, steps: int, out: Path, data: Path) -> dict:
    command = [sys.executable, __file__, "--run-side", side, "--workload", workload, "--precision", precision]
    command += ["--steps", str(steps), "--out", str(out), "--data", str(data)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{side} {workload} {precision} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run (default 60)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each contender (default 3)")
    parser.add_argument("--quick", action="store_true", help="24 steps, 1 repeat, float32 and bfloat16")
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--precision", choices=["float32", "bfloat16", "both"], default="both")
    parser.add_argument("--data", type=Path, default=DATA, help=f"the shared data folder (default {DATA})")
    parser.add_argument("--run-side", choices=["attnkit", "transformers"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_side:
        print(json.dumps(run_side(args.run_side, args.workload, args.precision, args.steps, args.out, args.data)))
        return
    if args.quick:
        args.steps, args.repeats = 24, 1
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    precisions = ["float32", "bfloat16"] if args.precision == "both" else [args.precision]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for workload in workloads:
            for precision in precisions:
                ours, theirs = [], []
                for repeat in range(args.repeats):
                    runs = {
                        side: run_in_process(side, workload, precision, args.steps, Path(scratch) / side, args.data)
                        for side in ("attnkit", "transformers")
                    }
                    ours.append(runs["attnkit"]["tokens_per_s"])
                    theirs.append(runs["transformers"]["tokens_per_s"])
                    print(
                        f"{workload} {precision} repeat {repeat + 1}: attnkit {ours[-1]:,.0f} tokens/s, "
                        f"transformers {theirs[-1]:,.0f}",
                        file=sys.stderr,
                        flush=True,
                    )
                a, t = statistics.median(ours), statistics.median(theirs)
                ratio = statistics.median(o / h for o, h in zip(ours, theirs))  # paired: each repeat's own ratio
                results.append(
                    {
                        "workload": workload,
                        "precision": precision,
                        "attnkit": round(a),
                        "transformers": round(t),
                        "ratio": round(ratio, 3),
                        "hf_batch": runs["transformers"]["hf_batch"],
                    }
                )
    print(json.dumps(machine()))
    print(f"{'workload':8} {'precision':9} {'attnkit tok/s':>14} {'transformers':>13} {'ratio':>6}  hf batch")
    for r in results:
        print(
            f"{r['workload']:8} {r['precision']:9} {r['attnkit']:>14,} {r['transformers']:>13,} "
            f"{r['ratio']:>5.2f}x  {r['hf_batch']}"
        )
    print(json.dumps({"steps": args.steps, "repeats": args.repeats, "results": results}))


if __name__ == "__main__":
    main()
