"""`attnkit export DIR --onnx`: a model as ONNX graphs that onnxruntime runs, checked against attnkit itself.

What is written (OUT/onnx.json says which, with the inputs, outputs and what the numbers mean):
  model.onnx    an encoder task model (classify: logits per text; tag: logits per token), a pretrained encoder
                (last hidden states) or a decoder-only language model (next-token logits);
  encoder.onnx  and decoder.onnx for an encoder-decoder: the source's hidden states, then next-token logits for
                a whole target prefix (no cache; onnx.json names the start and end tokens for the decoding loop);
  tokenizer.json, which the `tokenizers` package reads: its encode adds the special tokens attnkit gives the
                model's inputs (classify, tag and encoders: <s> text </s>, a tag model saved before 2026-11-29
                the words' subwords alone; seq2seq: text </s>; a language model's prompt: none).
Token ids and masks are int64 (batch, time), 1 on real tokens. Every graph is run by onnxruntime on a padded
batch before the export counts as done; its outputs must equal attnkit's within TOLERANCE (float32). With
`int8`, the graphs' matrix products are quantized dynamically (onnxruntime.quantization) after that check,
and the largest difference from float32 is reported instead.
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.export import Dim

from attnkit.errors import AttnkitError
from attnkit.files import FORMAT, ONNX_FILE, atomic_directory, write_json
from attnkit.interop.hf.export import save_with_specials
from attnkit.nn import Decoder, EncoderDecoder
from attnkit.pipeline import Pipeline, encoder_of

TOLERANCE = 1e-4  # of the outputs' scale (their largest magnitude, at least 1), float32 against float32
OPSET = 18
# (source lengths, target lengths) of the example batches: the graph is traced on the first, and checked on both
# (a graph that kept the first batch's shapes fails on the second)
EXAMPLES = [([7, 4], [5, 3]), ([12, 2, 9], [9, 1, 4])]

Inputs = dict[str, Tensor]


@dataclass
class Graph:
    """One exported graph: its module, its output's name, and example batches with, for a per-token output, the
    (batch, time) mask of its real positions (padding is not compared)."""

    name: str
    module: nn.Module
    output: str
    examples: list[tuple[Inputs, Tensor | None]]


class _Stack(nn.Module):
    """A model that reads (ids, boolean mask), called with ONNX's int64 mask."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids, attention_mask.bool())


class _Decoder(nn.Module):
    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, decoder_input_ids: Tensor, encoder_hidden_states: Tensor, encoder_attention_mask: Tensor
    ) -> Tensor:
        return self.model.decode(decoder_input_ids, encoder_hidden_states, encoder_attention_mask.bool())


def export_onnx(
    path: str | os.PathLike, out: str | os.PathLike, int8: bool = False, trust_pickle: bool = False
) -> dict:
    """Write the model at `path` as ONNX graphs in `out` (replaced whole, only once every graph checks out);
    returns what onnx.json says, with the largest difference from attnkit per graph."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise AttnkitError("ONNX export needs the onnx extra: pip install 'attnkit[onnx]'") from None
    pipeline = Pipeline.load(path, trust_pickle, device="cpu")
    model = pipeline.model.eval()
    if getattr(model, "shapes", None) is not None:
        raise AttnkitError(f"{path}: a tagger trained with task.word_shapes reads word shapes; no ONNX export for it")
    with torch.no_grad():
        graphs, manifest = _graphs(pipeline, model)
    with atomic_directory(out) as staging:
        differences = {}
        for graph in graphs:
            file = staging / f"{graph.name}.onnx"
            _export_graph(graph, file, where=str(path))
            differences[graph.name] = _check(graph, file, where=str(path))
            if int8:
                differences[graph.name] = _quantize(graph, file)
        _save_tokenizer(pipeline, model, staging / "tokenizer.json")
        manifest = {"format": FORMAT, **manifest, "int8": int8, "max_difference": differences}
        write_json(staging / ONNX_FILE, manifest)
    return manifest


def _graphs(pipeline: Pipeline, model: nn.Module) -> tuple[list[Graph], dict]:
    """The graphs to export for this model, with example batches, and onnx.json's description of them."""
    tokenizer, task = pipeline.tokenizer, pipeline.task
    vocab, pad_id = tokenizer.vocab_size, tokenizer.pad_id
    special = {"pad_id": pad_id, "eos_id": tokenizer.eos_id, "bos_id": tokenizer.bos_id}
    manifest: dict = {"task": task.name if task is not None else "pretrain", **special}
    if pipeline.max_input_tokens is not None:
        manifest["max_input_tokens"] = pipeline.max_input_tokens
    sources = [_example(vocab, lengths, pad_id, seed=n) for n, (lengths, _) in enumerate(EXAMPLES)]
    source_examples = [({"input_ids": ids, "attention_mask": mask.long()}, mask) for ids, mask in sources]
    if isinstance(model, EncoderDecoder):
        from attnkit.tasks.seq2seq import decoder_start

        decoder_examples = []
        for n, ((ids, mask), (_, target_lengths)) in enumerate(zip(sources, EXAMPLES)):
            target, target_mask = _example(vocab, target_lengths, pad_id, seed=len(EXAMPLES) + n)
            inputs = {"decoder_input_ids": target, "encoder_hidden_states": model.encode(ids, mask)}
            decoder_examples.append(({**inputs, "encoder_attention_mask": mask.long()}, target_mask))
        graphs = [
            Graph("encoder", _Stack(model.encoder), "last_hidden_state", source_examples),
            Graph("decoder", _Decoder(model), "logits", decoder_examples),
        ]
        manifest["graphs"] = {
            "encoder": {"inputs": list(source_examples[0][0]), "output": "last_hidden_state (batch, time, dim)"},
            "decoder": {
                "inputs": list(decoder_examples[0][0]),
                "output": "logits (batch, target time, vocab): the next token",
            },
        }
        manifest["decoder_start_id"] = decoder_start(model.config, tokenizer)
        return graphs, manifest
    if isinstance(model, Decoder):
        output, meaning = "logits", "logits (batch, time, vocab): the next token after each position"
        module = _Stack(model)
    elif task is None or task.name == "pretrain":
        output, meaning = "last_hidden_state", "last_hidden_state (batch, time, dim)"
        module = _Stack(encoder_of(model))
    else:
        output = "logits"
        meaning = "logits (batch, labels)" if task.name == "classify" else "logits (batch, time, tags)"
        module = _Stack(model)
        if task.name == "classify":
            manifest["labels"] = list(task.labels)
            source_examples = [(inputs, None) for inputs, _ in source_examples]  # one row per text: no padding
        else:
            manifest["tags"] = list(task.tags)
    manifest["graphs"] = {"model": {"inputs": list(source_examples[0][0]), "output": meaning}}
    return [Graph("model", module, output, source_examples)], manifest


def _save_tokenizer(pipeline: Pipeline, model: nn.Module, file: Path) -> None:
    if isinstance(model, Decoder):  # a prompt is continued as it is
        pipeline.tokenizer.save(file)
        return
    specials = "both" if pipeline.task is None else pipeline.task.specials  # an encoder reads <s> text </s>
    save_with_specials(pipeline.tokenizer, file, specials)


def _example(vocab: int, lengths: list[int], pad_id: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    """Random ids of `lengths`, padded: a batch where padding must not change the real rows."""
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    ids = torch.randint(0, vocab, (len(lengths), longest), generator=generator)
    mask = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
    return ids.masked_fill(~mask, pad_id), mask


def _export_graph(graph: Graph, file: Path, where: str) -> None:
    """torch.onnx's exporter (torch.export underneath), every input's batch and time axes dynamic."""
    inputs = graph.examples[0][0]
    dynamic = {name: {0: Dim.DYNAMIC, 1: Dim.DYNAMIC} for name in inputs}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals say nothing to a user
        try:
            torch.onnx.export(
                graph.module.eval(),
                tuple(inputs.values()),
                str(file),
                input_names=list(inputs),
                output_names=[graph.output],
                dynamic_shapes=dynamic,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as error:  # the exporter's failures are many and deep; the first line says which
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise AttnkitError(f"{where}: torch.onnx could not export {graph.name}.onnx: {reason}") from None


def _run(file: Path, inputs: Inputs) -> Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {k: v.numpy() for k, v in inputs.items()})[0])


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


def _difference(actual: Tensor, expected: Tensor, real: Tensor | None) -> float:
    """The largest difference on real rows, as a fraction of the expected values' scale (at least 1)."""
    if real is not None:
        actual, expected = actual[real], expected[real]
    scale = max(float(expected.abs().max()), 1.0)
    return float((actual - expected).abs().max()) / scale
