"""English -> Spanish translation: attnkit against Hugging Face transformers, same data, same model size, same
wall time.

Both sides use the same BPE tokenizer (the one attnkit trains on the training pairs), the same model size
(a Marian-style encoder-decoder: 3 + 3 layers, dim 256, 4 heads, feed-forward 1024, shared embeddings, tied
output), label smoothing 0.1, AdamW with inverse-square-root decay after warmup, bfloat16 autocast, and the same
training wall time; neither looks at dev data while training. Then each decodes the test set with beam 4 and
sacreBLEU scores both the same way. transformers trains with its Seq2SeqTrainer (batches of sentences grouped
by length); attnkit with `attnkit.train` (batches by token budget).

    python benchmarks/translate_vs_hf.py --minutes 30 [--data ../shared/data/translation] [--out runs/bench-mt]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from machine import machine

import attnkit
from attnkit.data.batching import pad
from attnkit.data.readers import read_pairs
from attnkit.data.tokenizer import Tokenizer
from attnkit.tasks.metrics import generation

SIZE = {"dim": 256, "num_heads": 4, "ff_dim": 1024, "num_layers": 3, "num_decoder_layers": 3, "dropout": 0.1}
# A 30-minute CPU run makes under 1,000 steps, so the warmup is short for both sides.
LR, WARMUP, BATCH_TOKENS, BEAM, MAX_LENGTH = 7e-4, 300, 8192, 4, 160


def train_attnkit(data: Path, out: Path, minutes: float) -> dict:
    run = attnkit.RunConfig.from_values(
        {
            "task": {"name": "seq2seq", "beam_size": BEAM},
            "out": str(out),
            "data": {
                "train": str(data / "en-es.bible.train.tsv"),
                "test": str(data / "en-es.bible.test.tsv"),
                "max_length": MAX_LENGTH,
                "max_new_tokens": MAX_LENGTH,
            },
            "tokenizer": {"vocab_size": 10000},
            "model": dict(SIZE),
            "train": {
                "epochs": 1000,
                "max_minutes": minutes,
                "lr": LR,
                "warmup_steps": WARMUP,
                "schedule": "inverse_sqrt",
                "batch_tokens": BATCH_TOKENS,
                "precision": "bfloat16",
                "eval_every": 10**9,
                "patience": None,
            },
        },
        "benchmark",
    )
    summary = attnkit.train(run, overwrite=True)
    return {
        "bleu": summary["test"]["bleu"],
        "chrf": summary["test"]["chrf"],
        "steps": summary["steps"],
        "train_minutes": summary["minutes"],
    }


def train_transformers(data: Path, tokenizer: Tokenizer, out: Path, minutes: float) -> dict:
    from transformers import (
        DataCollatorForSeq2Seq,
        MarianConfig,
        MarianMTModel,
        PreTrainedTokenizerFast,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        TrainerCallback,
    )

    hf_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    config = MarianConfig(
        vocab_size=tokenizer.vocab_size,
        d_model=SIZE["dim"],
        encoder_layers=SIZE["num_layers"],
        decoder_layers=SIZE["num_decoder_layers"],
        encoder_attention_heads=SIZE["num_heads"],
        decoder_attention_heads=SIZE["num_heads"],
        encoder_ffn_dim=SIZE["ff_dim"],
        decoder_ffn_dim=SIZE["ff_dim"],
        dropout=SIZE["dropout"],
        attention_dropout=0.0,
        activation_dropout=0.0,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_id,
        eos_token_id=tokenizer.eos_id,
        bos_token_id=tokenizer.bos_id,
        decoder_start_token_id=tokenizer.bos_id,
        forced_eos_token_id=tokenizer.eos_id,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        scale_embedding=True,
    )
    torch.manual_seed(1)
    model = MarianMTModel(config)
    pairs = list(read_pairs(data / "en-es.bible.train.tsv"))
    sources = tokenizer.encode_batch([p.source for p in pairs])
    targets = tokenizer.encode_batch([p.target for p in pairs])
    keep = MAX_LENGTH - 1
    dataset = [
        {"input_ids": s[:keep] + [tokenizer.eos_id], "labels": t[:keep] + [tokenizer.eos_id]}
        for s, t in zip(sources, targets)
    ]
    mean_pair = sum(len(d["input_ids"]) + len(d["labels"]) for d in dataset) / len(dataset)

    class StopAfter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.start >= 60 * minutes:
                control.should_training_stop = True

    arguments = Seq2SeqTrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=max(1, int(BATCH_TOKENS / mean_pair)),
        learning_rate=LR,
        warmup_steps=WARMUP,
        lr_scheduler_type="inverse_sqrt",
        weight_decay=0.01,
        adam_beta2=0.98,
        label_smoothing_factor=0.1,
        max_steps=10**7,
        train_sampling_strategy="group_by_length",
        bf16=True,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=100,
        dataloader_num_workers=0,
        seed=1,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=arguments,
        train_dataset=dataset,
        processing_class=hf_tokenizer,
        data_collator=DataCollatorForSeq2Seq(hf_tokenizer, model=model),
        callbacks=[StopAfter()],
    )
    started = time.perf_counter()
    result = trainer.train()
    train_minutes = (time.perf_counter() - started) / 60

    test = list(read_pairs(data / "en-es.bible.test.tsv"))
    test_sources = [ids[:keep] + [tokenizer.eos_id] for ids in tokenizer.encode_batch([p.source for p in test])]
    order = sorted(range(len(test)), key=lambda i: len(test_sources[i]))
    outputs: dict[int, str] = {}
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for start in range(0, len(order), 32):
            chunk = order[start : start + 32]
            ids, mask = pad([test_sources[i] for i in chunk], tokenizer.pad_id)
            generated = model.generate(
                input_ids=ids,
                attention_mask=mask.long(),
                num_beams=BEAM,
                length_penalty=1.0,
                max_new_tokens=min(MAX_LENGTH, 2 * ids.shape[1] + 10),
            )
            for i, row in zip(chunk, generated.tolist()):
                outputs[i] = tokenizer.decode(row)
    hypotheses = [outputs[i] for i in range(len(test))]
    scores = generation(hypotheses, [p.target for p in test])
    return {"bleu": scores["bleu"], "chrf": scores["chrf"], "steps": result.global_step, "train_minutes": train_minutes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall time for each side")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/translation"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-mt"))
    args = parser.parse_args()

    results = {"attnkit": train_attnkit(args.data, args.out / "attnkit", args.minutes)}
    tokenizer = Tokenizer.load(args.out / "attnkit")
    results["transformers"] = train_transformers(args.data, tokenizer, args.out / "transformers", args.minutes)

    test_size = len(list(read_pairs(args.data / "en-es.bible.test.tsv")))
    print(f"en->es Bible, {args.minutes:g} min of training each, beam {BEAM}, {test_size} test verses")
    print(f"{'':<14} {'BLEU':>6} {'chrF':>6} {'steps':>7} {'train min':>10}")
    for name, r in results.items():
        print(f"{name:<14} {r['bleu']:>6.2f} {r['chrf']:>6.2f} {r['steps']:>7} {r['train_minutes']:>10.1f}")
    ratio = results["attnkit"]["bleu"] / max(results["transformers"]["bleu"], 1e-9)
    print(f"BLEU ratio attnkit / transformers: {ratio:.2f}")
    print(json.dumps({"benchmark": "translate_vs_hf", "minutes": args.minutes, "machine": machine(), **results}))


if __name__ == "__main__":
    main()
