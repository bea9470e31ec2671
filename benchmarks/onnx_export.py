"""ONNX export, float32 and int8: the test metric and the time to predict a test file, against attnkit's own
runtime (float32 and --int8), for one trained classify or seq2seq model.

Each contender predicts the same examples in the same batches (attnkit's, grouped by length). seq2seq decodes
greedily on every side (the ONNX decoder graph takes and returns its cache: a plain onnxruntime loop feeds it
each new token alone, as attnkit's own decoding does), with attnkit's limits and suppressed tokens; attnkit's own
beam search is reported beside it. The contenders alternate, --repeats times; the median time counts.

    python benchmarks/onnx_export.py runs/sentiment --data ../shared/data/sentiment/movies.test.tsv
    python benchmarks/onnx_export.py runs/en-es --data ../shared/data/translation/en-es.bible.test.tsv --repeats 1

Needs the onnx extra. Prints a table, then one JSON line. Not run by CI.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from machine import machine

import attnkit
from attnkit.apps.onnx_export import export_onnx
from attnkit.data.batching import BATCH_TOKENS, batches_by_tokens
from attnkit.tasks.generation import suppressed


class OnnxModel:
    """The exported graphs in onnxruntime, predicting as the attnkit task does from its collated batches."""

    def __init__(self, folder: Path, pipeline: attnkit.Pipeline) -> None:
        self.sessions = {
            path.stem: onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            for path in folder.glob("*.onnx")
        }
        self.manifest = json.loads((folder / "onnx.json").read_text())
        self.pipeline = pipeline

    def predict(self, batch: dict) -> list:
        task = self.pipeline.task
        if task.name == "classify":
            (logits,) = self._run("model", input_ids=batch["ids"].numpy(), attention_mask=batch["mask"].long().numpy())
            return [{"label": task.labels[int(i)]} for i in logits.argmax(-1)]
        return self._greedy(batch["source"].numpy(), batch["source_mask"].long().numpy())

    def _greedy(self, source: np.ndarray, mask: np.ndarray) -> list[str]:
        """Greedy decoding; a row that has ended leaves every array, as in attnkit's own decoding."""
        task, tokenizer = self.pipeline.task, self.pipeline.tokenizer
        _, cross_keys, cross_values = self._run("encoder", input_ids=source, attention_mask=mask)
        limit = min(task.data.max_new_tokens, 2 * int(mask.sum(1).max()) + 10)
        eos = self.manifest["eos_id"]
        cache = self.manifest["cache"]
        past_keys = past_values = np.zeros(
            (cache["layers"], len(source), cache["heads"], 0, cache["head_dim"]), np.float32
        )
        outputs: list[list[int]] = [[] for _ in source]
        rows = np.arange(len(source))  # the outputs still being decoded, in the order of the arrays' rows
        last = np.full((len(source), 1), self.manifest["decoder_start_id"], dtype=np.int64)
        for _ in range(limit):
            logits, past_keys, past_values = self._run(
                "decoder",
                decoder_input_ids=last,
                encoder_attention_mask=mask,
                cross_keys=cross_keys,
                cross_values=cross_values,
                past_keys=past_keys,
                past_values=past_values,
            )
            logits = logits[:, -1]
            logits[:, suppressed(tokenizer)] = -np.inf
            chosen = logits.argmax(-1)
            for row, token in zip(rows, chosen):
                if token != eos:
                    outputs[row].append(int(token))
            going = chosen != eos
            if not going.any():
                break
            if not going.all():
                rows, mask = rows[going], mask[going]
                cross_keys, cross_values = cross_keys[:, going], cross_values[:, going]
                past_keys, past_values = past_keys[:, going], past_values[:, going]
            last = chosen[going][:, None]
        return [tokenizer.decode(output) for output in outputs]

    def _run(self, graph: str, **inputs: np.ndarray) -> list[np.ndarray]:
        return self.sessions[graph].run(None, inputs)


@torch.no_grad()  # as attnkit's own predict runs
def predict_all(predict, batches: list[dict], count: int, indices: list[list[int]]) -> list:
    predictions: list = [None] * count
    for rows, batch in zip(indices, batches):
        for row, prediction in zip(rows, predict(batch)):
            predictions[row] = prediction
    return predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a trained classify or seq2seq model directory")
    parser.add_argument("--data", required=True, help="its labelled test file")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pipeline = attnkit.load(args.model, device="cpu")
    task = pipeline.task
    if task.name == "seq2seq":
        pipeline = pipeline.with_decoding(beam_size=1)  # greedy, as the ONNX loop decodes
        task = pipeline.task
    examples = task.read(task.data, args.data)
    items = task.encode(examples, training=False)
    indices = batches_by_tokens(task.sizes(items), BATCH_TOKENS, shuffle=False)
    batches = [task.collate([items[i] for i in rows]) for rows in indices]
    int8_pipeline = attnkit.load(args.model, int8=True)
    if task.name == "seq2seq":
        int8_pipeline = int8_pipeline.with_decoding(beam_size=1)
    with tempfile.TemporaryDirectory() as scratch:
        exported = {}
        for name, int8 in (("onnx float32", False), ("onnx int8", True)):
            began = time.perf_counter()
            export_onnx(args.model, Path(scratch) / name.replace(" ", "-"), int8=int8)
            exported[name] = time.perf_counter() - began
        contenders = {
            "attnkit float32": lambda batch: task.decode(pipeline.model, batch),
            "attnkit int8": lambda batch: int8_pipeline.task.decode(int8_pipeline.model, batch),
            "onnx float32": OnnxModel(Path(scratch) / "onnx-float32", pipeline).predict,
            "onnx int8": OnnxModel(Path(scratch) / "onnx-int8", pipeline).predict,
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        scores: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, predict in contenders.items():
                began = time.perf_counter()
                predictions = predict_all(predict, batches, len(items), indices)
                times[name].append(time.perf_counter() - began)
                scores[name] = task.metrics(predictions, examples)[task.main_metric]
    metric = task.main_metric
    seconds = {name: statistics.median(spent) for name, spent in times.items()}
    print(json.dumps(machine()))
    print(f"{'':<16} {metric:>9} {'seconds':>8} {'speed':>6}")
    for name in contenders:
        speed = seconds["attnkit float32"] / seconds[name]
        print(f"{name:<16} {scores[name]:>9.4f} {seconds[name]:>8.2f} {speed:>5.2f}x")
    print(f"export: {', '.join(f'{n} {s:.0f} s' for n, s in exported.items())}")
    decoding = "greedy" if task.name == "seq2seq" else None
    print(json.dumps({"metric": metric, "scores": scores, "seconds": seconds, "export_seconds": exported,
                      "decoding": decoding, "model": args.model, "data": args.data}))  # fmt: skip


if __name__ == "__main__":
    main()
