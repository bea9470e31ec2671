"""Generation speed: attnkit's `generate` against transformers' `generate` and CTranslate2, same weights.

One random BART model of Marian-base size (6 + 6 layers, dim 512, 8 heads, feed-forward 2048, vocabulary 8,000) is
written with `save_pretrained`; attnkit reads that directory through its Hugging Face import, transformers loads
it, and CTranslate2 converts it with its own converter (float32, and int8 for its fastest mode). CTranslate2 4.8.5's
converter reads BART config fields that transformers 5 no longer writes; they are added to config.json with
their BART values. Each contender decodes the same batch of random source sentences (20 to 30 tokens) with greedy
search and beam 4, exactly --new-tokens tokens (</s> is held back on every side, so the work is equal and greedy
outputs can be compared token for token). attnkit runs in float32, with its int8 linear layers (`--int8`), and
with its weights cast to bfloat16 once (matrix products in bfloat16, log-probabilities in float32); and on
CTranslate2 through `--engine ct2` (float32 and int8), whose rows against CTranslate2 run directly are attnkit's
overhead.
The contenders alternate, each repeat in turn; the median time counts.

    python benchmarks/generate_speed.py [--quick] [--threads 1] [--new-tokens 32] [--device cuda]

On a GPU (--device cuda) the CPU-only contenders (attnkit's int8 linear layers) are left out, and CTranslate2's
int8 is int8_float16.

Prints a table of new tokens per second and ratios, then one JSON line. Not run by CI (needs the bench extra:
pip install -c constraints.txt -e '.[bench]').
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import machine

import attnkit
from attnkit.data.batching import pad
from attnkit.nn.decoding import generate

VOCAB, BOS, PAD, EOS = 8000, 0, 1, 2
BART_FIELDS = {  # what CTranslate2's converter still reads from a BART config
    "normalize_before": False,
    "add_final_layer_norm": False,
    "normalize_embedding": True,
    "static_position_embeddings": False,
    "add_bias_logits": False,
}


def write_model(folder: Path) -> Path:
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    config = transformers.BartConfig(
        vocab_size=VOCAB,
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        max_position_embeddings=256,
        bos_token_id=BOS,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=EOS,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    transformers.BartForConditionalGeneration(config).save_pretrained(folder)
    vocabulary = {"<s>": BOS, "<pad>": PAD, "</s>": EOS, "<unk>": 3, **{f"w{i}": i for i in range(4, VOCAB)}}
    words = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    transformers.PreTrainedTokenizerFast(tokenizer_object=words, **special).save_pretrained(folder)
    config_file = folder / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **BART_FIELDS}))
    return folder


def sources(batch: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(batch)
    lengths = torch.randint(20, 31, (batch,), generator=generator).tolist()
    return [[*torch.randint(4, VOCAB, (n - 1,), generator=generator).tolist(), EOS] for n in lengths]


def contenders(folder: Path, scratch: Path, threads: int, new_tokens: int, device: str) -> dict:
    """name -> function(rows of source ids, beams) -> the generated ids of each row."""
    import ctranslate2
    import transformers

    theirs = transformers.BartForConditionalGeneration.from_pretrained(folder).eval().to(device)
    cpu = device == "cpu"

    def attnkit_of(int8: bool = False, bfloat16: bool = False, engine: str = "torch"):
        model = attnkit.load(folder, device=device, int8=int8, engine=engine).model
        if bfloat16:
            model = model.to(torch.bfloat16)

        def run(rows: list[list[int]], beams: int) -> list[list[int]]:
            ids, mask = (t.to(device) for t in pad(rows, PAD))
            return generate(model, ids, mask, start_id=EOS, eos_id=EOS, max_new_tokens=new_tokens, beam_size=beams,
                            suppress=[EOS])  # fmt: skip

        return run

    def transformers_generate(rows: list[list[int]], beams: int) -> list[list[int]]:
        ids, mask = (t.to(device) for t in pad(rows, PAD))
        with torch.no_grad():
            out = theirs.generate(input_ids=ids, attention_mask=mask.long(), num_beams=beams, do_sample=False,
                                  max_new_tokens=new_tokens, min_new_tokens=new_tokens)  # fmt: skip
        return [row[1:].tolist() for row in out.cpu()]  # without the decoder start token

    def ctranslate2_of(quantization: str):
        target = scratch / f"ct2-{quantization}"
        ctranslate2.converters.TransformersConverter(str(folder)).convert(str(target), quantization=quantization)
        translator = ctranslate2.Translator(str(target), device=device, intra_threads=threads, inter_threads=1)

        def run(rows: list[list[int]], beams: int) -> list[list[int]]:
            tokens = [[f"w{i}" if i >= 4 else "</s>" for i in row] for row in rows]
            results = translator.translate_batch(tokens, beam_size=beams, max_decoding_length=new_tokens,
                                                 min_decoding_length=new_tokens)  # fmt: skip
            return [[int(t[1:]) if t.startswith("w") else 3 for t in r.hypotheses[0]] for r in results]

        return run

    return {
        "attnkit": attnkit_of(int8=False),
        **({"attnkit int8": attnkit_of(int8=True)} if cpu else {}),  # PyTorch's int8 linear layers are CPU-only
        "attnkit bfloat16": attnkit_of(bfloat16=True),
        "attnkit ct2": attnkit_of(engine="ct2"),
        "attnkit ct2 int8": attnkit_of(int8=True, engine="ct2"),
        "transformers": transformers_generate,
        "ctranslate2 float32": ctranslate2_of("float32"),
        "ctranslate2 int8": ctranslate2_of("int8" if cpu else "int8_float16"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 5")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU rows (benchmarks/gpu_check.py)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else 5
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_model(Path(scratch) / "bart")
        runs = contenders(folder, Path(scratch), args.threads, args.new_tokens, args.device)
        for batch in (1, 16):
            rows = sources(batch)
            for beams in (1, 4):
                times: dict[str, list[float]] = {name: [] for name in runs}
                outputs = {}
                for name, run in runs.items():  # warm-up, and the outputs to compare
                    outputs[name] = run(rows, beams)
                for _ in range(repeats):
                    for name, run in runs.items():
                        began = time.perf_counter()
                        run(rows, beams)
                        times[name].append(time.perf_counter() - began)
                key = f"batch {batch}, {'greedy' if beams == 1 else f'beam {beams}'}"
                results[key] = {
                    name: batch * args.new_tokens / statistics.median(spent) for name, spent in times.items()
                }
                results[key]["same tokens as transformers"] = outputs["attnkit"] == outputs["transformers"]
                results[key]["engine ct2 same tokens"] = outputs["attnkit ct2"] == outputs["ctranslate2 float32"]
    names = list(runs)
    print(f"new tokens per second, {args.threads} thread(s), {args.new_tokens} new tokens, median of {repeats}")
    ratios = {
        key: {
            "float32_vs_transformers": round(row["attnkit"] / row["transformers"], 3),
            "float32_vs_ctranslate2_float32": round(row["attnkit"] / row["ctranslate2 float32"], 3),
            "int8_vs_ctranslate2_int8": round(row.get("attnkit int8", 0) / row["ctranslate2 int8"], 3),
            "bfloat16_vs_ctranslate2_int8": round(row["attnkit bfloat16"] / row["ctranslate2 int8"], 3),
            "engine_ct2_vs_ctranslate2_float32": round(row["attnkit ct2"] / row["ctranslate2 float32"], 3),
            "engine_ct2_int8_vs_ctranslate2_int8": round(row["attnkit ct2 int8"] / row["ctranslate2 int8"], 3),
        }
        for key, row in results.items()
    }
    print(
        f"{'':<18}"
        + "".join(f"{name:>20}" for name in names)
        + "".join(f"{r:>11}" for r in ("f32/hf", "f32/ct2", "int8/ct2", "bf16/ct2i8", "eng/ct2", "engi8/ct2i8"))
    )
    for key, row in results.items():
        line = f"{key:<18}" + "".join(f"{row[name]:>20,.0f}" for name in names)
        line += "".join(f"{ratio:>10.2f}x" for ratio in ratios[key].values())
        notes = [] if row["same tokens as transformers"] else ["attnkit's tokens differ from transformers'"]
        notes += [] if row["engine ct2 same tokens"] else ["--engine ct2's tokens differ from CTranslate2's"]
        print(line + (f"  ({'; '.join(notes)})" if notes else ""))
    print(json.dumps({"ratios": ratios, "tokens_per_s": results, "threads": args.threads, "device": args.device,
                      "machine": machine()}))  # fmt: skip


if __name__ == "__main__":
    main()
