"""`attnkit export DIR --onnx`: a model as ONNX graphs that onnxruntime runs, checked against attnkit itself.

What is written (OUT/onnx.json says which, with the inputs, outputs and what the numbers mean), as the model's task
says (Task.onnx_graphs):
  model.onnx    an encoder task model (classify and pair: logits per input; regress: the scores in their units; tag:
                logits per token), a pretrained encoder (last hidden states) or a decoder-only language model
                (next-token logits, with its cache); a model of pairs with segments also reads token_type_ids;
  encoder.onnx  and decoder.onnx for an encoder-decoder: the source's hidden states and cross-attention keys and
                values, then next-token logits for the new target tokens, with the cache (attnkit.tasks.graphs;
                onnx.json names the start and end tokens for the decoding loop and the cache's shape);
  tokenizer.json, which the `tokenizers` package reads: its encode adds the special tokens attnkit gives the
                model's inputs (<s> text </s> for encoders, a tag model saved before 2026-11-29 the words' subwords
                alone; <s> a </s> b </s> with type ids for a pair; text </s> for a seq2seq source; a language
                model's prompt: none).
Token ids and masks are int64 (batch, time), 1 on real tokens. Every graph is run by onnxruntime on a padded
batch before the export counts as done; its outputs must equal attnkit's within TOLERANCE (float32). With
`int8`, the graphs' matrix products are quantized dynamically (onnxruntime.quantization) after that check,
and the largest difference from float32 is reported instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.export import Dim

from attnkit.errors import AttnkitError, install
from attnkit.files import FORMAT, ONNX_FILE, atomic_directory, write_json
from attnkit.inference.pipeline import Pipeline
from attnkit.interop.hf.save import save_with_specials
from attnkit.tasks.graphs import Graph, Inputs

TOLERANCE = 1e-4  # of the outputs' scale (their largest magnitude, at least 1), float32 against float32
OPSET = 18


def export_onnx(
    path: str | os.PathLike, out: str | os.PathLike, int8: bool = False, trust_pickle: bool = False
) -> dict:
    """Write the model at `path` as ONNX graphs in `out` (replaced whole, only once every graph checks out);
    returns what onnx.json says, with the largest difference from attnkit per graph. An ensemble's members are
    written each in its folder, members/0, members/1, ..., and onnx.json says how to combine their outputs."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise AttnkitError(f"ONNX export needs the onnx extra: {install('onnx')}") from None
    pipeline = Pipeline.load(path, trust_pickle, device="cpu")
    with atomic_directory(out) as staging, _libraries_quiet():
        if len(pipeline.members) == 1:
            return _write(pipeline, staging, int8, str(path))
        members = {}
        for i, member in enumerate(pipeline.members):
            folder = staging / "members" / str(i)
            folder.mkdir(parents=True)
            members[f"members/{i}"] = _write(member, folder, int8, f"{path} (member {i})")
        manifest = {
            "format": FORMAT,
            "task": pipeline.task.config.name,
            "ensemble": list(members),
            "outputs": pipeline.task.output_names,
            "combine": ENSEMBLE_RULE,
            "int8": int8,
            "max_difference": {name: member["max_difference"] for name, member in members.items()},
        }
        write_json(staging / ONNX_FILE, manifest)
    return manifest


@contextlib.contextmanager
def _libraries_quiet() -> Iterator[None]:
    """The exporter's and the quantizer's notes on their own setup ("torchvision is not installed", "consider
    pre-processing before quantization") say nothing to a user: their log records up to warnings are off meanwhile."""
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)  # else logging.warning() would give the root logger a stderr handler for good
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        root.removeHandler(placeholder)


# how an ensemble's member graphs make one prediction, as onnx.json says it
ENSEMBLE_RULE = (
    "run each member on the input (its own tokenizer.json) and average their outputs, each in the order of the "
    "labels or tags of its own onnx.json: a classifier's probabilities (softmax of the logits), a tagger's for each "
    "word (softmax of the logits at the word's first subword), a regressor's numbers; the prediction is read from "
    "the mean"
)


def _write(pipeline: Pipeline, folder: Path, int8: bool, where: str) -> dict:
    """One model's graphs, tokenizer.json and onnx.json in `folder`; returns what onnx.json says."""
    model, task, tokenizer = pipeline.model.eval(), pipeline.task, pipeline.tokenizer
    try:
        with torch.no_grad():
            graphs, outputs = task.onnx_graphs(model)
    except AttnkitError as error:
        raise AttnkitError(f"{where}: {error}") from None
    special = {"pad_id": tokenizer.pad_id, "eos_id": tokenizer.eos_id, "bos_id": tokenizer.bos_id}
    manifest = {"task": task.config.name, **special, **outputs}
    if pipeline.max_input_tokens is not None:
        manifest["max_input_tokens"] = pipeline.max_input_tokens
    manifest["graphs"] = {graph.name: graph.describe() for graph in graphs}
    differences = {}
    for graph in graphs:
        file = folder / f"{graph.name}.onnx"
        _export_graph(graph, file, where=where)
        differences[graph.name] = _check(graph, file, where=where)
        if int8:
            differences[graph.name] = _quantize(graph, file)
    if task.specials is None:  # a prompt is continued as it is
        tokenizer.save(folder / "tokenizer.json")
    else:
        save_with_specials(tokenizer, folder / "tokenizer.json", task.specials, len(task.input_fields) > 1)
    manifest = {"format": FORMAT, **manifest, "int8": int8, "max_difference": differences}
    write_json(folder / ONNX_FILE, manifest)
    return manifest


def _export_graph(graph: Graph, file: Path, where: str) -> None:
    """torch.onnx's exporter (torch.export underneath), each input's batch and time axes dynamic (a cache's: batch and
    its length)."""
    inputs = graph.examples[0][0]
    dynamic = {name: {axis: Dim.DYNAMIC for axis in graph.dynamic_axes(name)} for name in inputs}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals say nothing to a user
        try:
            torch.onnx.export(
                graph.module.eval(),
                tuple(inputs.values()),
                str(file),
                input_names=list(inputs),
                output_names=graph.outputs,
                dynamic_shapes=dynamic,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as error:  # the exporter's failures are many and deep; the first line says which
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise AttnkitError(f"{where}: torch.onnx could not export {graph.name}.onnx: {reason}") from None


def _run(file: Path, inputs: Inputs) -> list[Tensor]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(output) for output in session.run(None, {k: v.numpy() for k, v in inputs.items()})]


def _check(graph: Graph, file: Path, where: str) -> float:
    """onnxruntime's outputs of the example batches against attnkit's, on real positions; refuses a mismatch."""
    differences = []
    for inputs, real in graph.examples:
        with torch.no_grad():
            expected = graph.module(*inputs.values())
        differences.append(_difference(_run(file, inputs), expected, real))
    difference = max(differences)
    if difference > TOLERANCE:
        raise AttnkitError(
            f"{where}: the exported {graph.name}.onnx differs from attnkit by {difference:.2e} of the output's scale "
            f"(at most {TOLERANCE:g} allowed); nothing was written"
        )
    return difference


def _quantize(graph: Graph, file: Path) -> float:
    """Replace `file` by its int8 version; returns the largest difference from the float32 graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    expected = [_run(file, inputs) for inputs, _ in graph.examples]
    quantized = file.with_suffix(".int8.onnx")
    quantize_dynamic(str(file), str(quantized), weight_type=QuantType.QInt8)
    shutil.move(quantized, file)
    return max(_difference(_run(file, inputs), full, real) for (inputs, real), full in zip(graph.examples, expected))


def _difference(actual: list[Tensor], expected: Tensor | Sequence[Tensor], real: Tensor | None) -> float:
    """The largest difference of any output, as a fraction of its expected values' scale (at least 1); the first
    output on its real rows only."""
    expected = [expected] if isinstance(expected, Tensor) else list(expected)
    worst = 0.0
    for n, (found, wanted) in enumerate(zip(actual, expected, strict=True)):
        if n == 0 and real is not None:
            found, wanted = found[real], wanted[real]
        scale = max(float(wanted.abs().max()), 1.0)
        worst = max(worst, float((found - wanted).abs().max()) / scale)
    return worst
