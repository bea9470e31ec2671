"""A trained checkpoint as something that predicts and evaluates: `attnkit.load(path).predict(texts)`."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Iterable
from copy import copy as clone
from pathlib import Path

import torch
from torch import Tensor, nn

from attnkit.checkpoint import load_model, load_weights, read_checkpoint_json
from attnkit.config import DataConfig, ModelConfig, RunConfig, TaskConfig, from_dict
from attnkit.data.batching import BATCH_TOKENS, batches_by_tokens, pad
from attnkit.data.readers import Pair, read_lines
from attnkit.errors import AttnkitError
from attnkit.files import WEIGHTS_FILE
from attnkit.generate import Sampling, TextStream, generate
from attnkit.interop.hf import is_hf_directory, load_hf_model, read_hf_config
from attnkit.nn import Decoder, Encoder, EncoderDecoder
from attnkit.nn.transformer import count_parameters
from attnkit.runtime import quantize_int8, resolve_device, to_device
from attnkit.tasks import Seq2SeqTask, Task, make_task
from attnkit.tasks.seq2seq import decoder_start, suppressed
from attnkit.tokenization import Tokenizer


class Pipeline:
    """A model with its tokenizer, and its task when it was trained for one (`attnkit train`). Pretrained
    models (`attnkit pretrain`, Hugging Face directories) have no task: they encode, and fine-tune with --init."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        task: Task | None = None,
        run: RunConfig | None = None,
        origin: str = "attnkit",
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task = task
        self.run = run
        self.origin = origin  # "attnkit", or the Hugging Face model_type the checkpoint was read from

    @classmethod
    def load(
        cls, path: str | os.PathLike, trust_pickle: bool = False, device: str = "auto", int8: bool = False
    ) -> Pipeline:
        """The checkpoint at `path` on `device` (auto: a GPU if there is one), wherever it was trained; with
        `int8`, its linear layers in int8 (on the CPU: faster, at a small cost in accuracy)."""
        pipeline = cls._load(Path(path), trust_pickle, resolve_device("cpu" if int8 and device == "auto" else device))
        if int8:
            quantize_int8(pipeline.model)
        return pipeline

    @classmethod
    def _load(cls, path: Path, trust_pickle: bool, place: torch.device) -> Pipeline:
        if is_hf_directory(path):
            model_type = read_hf_config(path)[0].model_type
            return cls(load_hf_model(path, trust_pickle).to(place), Tokenizer.load(path), origin=model_type)
        data = read_checkpoint_json(path)
        if "task" not in data:
            return cls(load_model(path).to(place), Tokenizer.load(path))
        run, state = read_run(path)
        tokenizer = Tokenizer.load(path)
        task = make_task(run.task, run.data, tokenizer, run.model, state)
        model = task.build_model()
        load_weights(model, path / WEIGHTS_FILE)
        return cls(model.to(place), tokenizer, task, run)

    def predict(self, texts: list[str]) -> list:
        """One prediction per input text: classify gives {"label", "probability"}; tag, a tag per
        whitespace-separated word; seq2seq, the output text. A blank text gives None (the model is not run)."""
        _refuse_a_string(texts)
        return self._predict_texts(texts)[1]

    def predict_lines(self, lines: Iterable[str], where: str = "input") -> tuple[list, list]:
        """The examples and predictions for one input per line (its line ending dropped), as `predict`: a blank
        line gives None. Input with no text on any line is an error that names `where` it came from."""
        _refuse_a_string(lines)
        texts = [line.rstrip("\n") for line in lines]
        if not any(text.strip() for text in texts):
            raise AttnkitError(f"{where}: no text to predict (one input per line)")
        return self._predict_texts(texts)

    def _predict_texts(self, texts: list[str]) -> tuple[list, list]:
        examples = self._task().inputs(texts)
        kept = [i for i, text in enumerate(texts) if text.strip()]
        predictions: list = [None] * len(texts)
        if kept:
            for i, prediction in zip(kept, self.predict_examples([examples[i] for i in kept])):
                predictions[i] = prediction
        return examples, predictions

    def predict_file(self, path: str | os.PathLike) -> tuple[list, list]:
        """The examples and predictions for a file: a .txt holds one input per line (see `predict_lines`); any
        other file is data in the task's format (.tsv, .csv, .jsonl, .conll), whose gold column is never read."""
        if Path(path).suffix == ".txt":
            return self.predict_lines(read_lines(path), str(path))
        task = self._task()
        examples = task.read(task.data, path, need_targets=False)
        return examples, self.predict_examples(examples)

    def predict_examples(self, examples: list) -> list:
        task = self._task()
        items = task.encode(examples, training=False)
        return predict_items(task, self.model, items, self.run.train.batch_tokens or BATCH_TOKENS)

    def evaluate(self, path: str | os.PathLike, warn: Callable[[str], None] | None = None) -> tuple[dict, list, list]:
        """Metrics on a labelled file, with its examples and the predictions. Gold labels the model never saw
        count as errors, and `warn` (default: warnings.warn) gets one line saying how many and which."""
        task = self._task()
        examples = task.read(task.data, path)
        unseen = task.unseen(examples)
        if unseen:
            (warn or warnings.warn)(unseen_message(path, unseen, task.gold_unit, task.gold_name))
        predictions = self.predict_examples(examples)
        return task.metrics(predictions, examples), examples, predictions

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """The encoder's last-layer states (batch, time, dim) for `texts`, each wrapped in its start and end
        tokens as in training and cut to `max_input_tokens`, and the mask (batch, time) that is True on real tokens."""
        return self._encode_ids(self.tokenizer.encode_batch(texts))

    def _encode_ids(self, token_ids: list[list[int]]) -> tuple[Tensor, Tensor]:
        encoder = encoder_of(self.model)
        if encoder is None:
            raise AttnkitError("this model has no encoder (a decoder-only model cannot encode)")
        limit, specials = self.max_input_tokens, len(self.tokenizer.add_specials([]))
        keep = None if limit is None else limit - specials
        ids, mask = pad([self.tokenizer.add_specials(t[:keep]) for t in token_ids], self.tokenizer.pad_id)
        device = next(encoder.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        return encoder(ids, mask), mask

    def embed(self, texts: list[str], normalize: bool = False) -> list[list[float]]:
        """One vector per text: the mean of the encoder's last-layer states over its real tokens (what
        sentence-embedding checkpoints such as all-MiniLM-L6-v2 are trained for), of unit length with `normalize`.
        A blank text (empty, or only spaces) gives the vector of the empty input, <s> </s>."""
        _refuse_a_string(texts)
        texts = [text if text.strip() else "" for text in texts]
        vectors: list = [None] * len(texts)
        token_ids = self.tokenizer.encode_batch(texts)
        sizes = [len(ids) + 2 for ids in token_ids]
        for indices in batches_by_tokens(sizes, BATCH_TOKENS, shuffle=False):  # similar lengths: little padding
            states, mask = self._encode_ids([token_ids[i] for i in indices])
            weights = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(1) / weights.sum(1)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            for i, vector in zip(indices, pooled.float().cpu().tolist()):
                vectors[i] = vector
        return vectors

    @property
    def max_input_tokens(self) -> int | None:
        """The most tokens of one input the model reads, start and end tokens included: data.max_length for
        classify and seq2seq (a longer input is cut), else the learned-position table (a tag model reads a longer
        sentence in windows, `encode` cuts), or None when positions extrapolate to any length."""
        if self.task is not None and self.task.name in ("classify", "seq2seq"):
            return self.task.data.max_length
        config = self.model.config
        return config.max_positions if config.positions == "learned" else None

    def count_tokens(self, texts: list[str], encoding: bool = False) -> list[int]:
        """The tokens of each text, uncut, that `predict` reads (a tag model: the subwords of its words; seq2seq:
        the source and </s>; classify: <s> text </s>), or with `encoding` that `encode` reads (<s> text </s>)."""
        tokenizer, name = self.tokenizer, None if encoding or self.task is None else self.task.name
        if name == "tag":
            return [len(item["ids"]) for item in self.task.encode(self.task.inputs(texts), training=False)]
        specials = 1 if name == "seq2seq" else len(tokenizer.add_specials([]))
        return [len(ids) + specials for ids in tokenizer.encode_batch(texts)]

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int | None = None,
        beam_size: int | None = None,
        sampling: Sampling | None = None,
        stream: Callable[[int, str], None] | None = None,
    ) -> list[str | None]:
        """One output per prompt: an encoder-decoder's output for its input text, a decoder's continuation of the
        prompt. Greedy or beam search (`beam_size`; default: a seq2seq model's own setting, else 1), or drawn with
        `sampling`; at most `max_new_tokens` (default: a seq2seq model's own limit; 64 for a decoder). A blank prompt
        gives None. `stream(i, text)` receives each new piece of output i as it is decoded (beam search: the whole
        output at its end); prompts are then generated one at a time, in order, else in batches."""
        _refuse_a_string(prompts)
        if max_new_tokens is not None and max_new_tokens < 1:
            raise AttnkitError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if sampling is not None and (beam_size or 1) > 1:
            raise AttnkitError("beam search (beam_size > 1) and sampling exclude each other: choose one")
        model, tokenizer = self.model, self.tokenizer
        if isinstance(model, EncoderDecoder):
            task = self.seq2seq_task()
            items = task.encode([Pair(prompt, "", i + 1) for i, prompt in enumerate(prompts)], training=False)
            rows = [item["source"] for item in items]
            start, config = decoder_start(model.config, tokenizer), task.config
            beam = 1 if sampling is not None else beam_size or config.beam_size
            settings = {"length_penalty": config.length_penalty, "no_repeat_ngram": config.no_repeat_ngram}
        elif isinstance(model, Decoder):
            rows = [[tokenizer.bos_id] * (tokenizer.bos_id is not None) + tokenizer.encode(p) for p in prompts]
            start, beam, settings = None, beam_size or 1, {}
        else:
            raise AttnkitError("this model has no decoder: it cannot generate text (an encoder classifies and tags)")
        kept = [i for i, prompt in enumerate(prompts) if prompt.strip()]
        if stream is not None:
            groups = [[i] for i in kept]
        elif start is None:  # a decoder reads unpadded prompts: batch those of equal length
            lengths = sorted({len(rows[i]) for i in kept})
            groups = [[i for i in kept if len(rows[i]) == length] for length in lengths]
        else:
            sizes = [len(rows[i]) for i in kept]
            groups = [[kept[j] for j in batch] for batch in batches_by_tokens(sizes, BATCH_TOKENS, shuffle=False)]
        outputs: list[str | None] = [None] * len(prompts)
        device = next(model.parameters()).device
        for group in groups:
            ids, mask = pad([rows[i] for i in group], tokenizer.pad_id)
            longest = ids.shape[1]
            if start is not None:
                limit = max_new_tokens or min(task.data.max_target_length, 2 * longest + 10)
            else:
                limit = self._room(longest, max_new_tokens or 64)
            # beam search knows its best output only at the end: it streams the whole of it then
            streaming = stream is not None and beam == 1
            text_stream = TextStream(tokenizer, lambda piece, i=group[0]: stream(i, piece)) if streaming else None
            tokens = generate(
                model,
                ids.to(device),
                mask.to(device) if start is not None else None,
                start_id=start,
                eos_id=tokenizer.eos_id,
                max_length=limit,
                beam_size=beam,
                suppress=suppressed(tokenizer),
                sampling=sampling,
                stream=text_stream,
                **settings,
            )
            for i, row in zip(group, tokens):
                outputs[i] = tokenizer.decode(row)
            if text_stream is not None:
                text_stream.finish()
            elif stream is not None and outputs[group[0]]:
                stream(group[0], outputs[group[0]])
        return outputs

    def _room(self, prompt_tokens: int, wanted: int) -> int:
        """New tokens a decoder can add to a prompt: `wanted`, or fewer when its learned positions run out."""
        config = self.model.config
        if config.positions != "learned":
            return wanted
        if prompt_tokens >= config.max_positions:
            raise AttnkitError(
                f"a prompt of {prompt_tokens} tokens leaves no room in this model's {config.max_positions} positions"
            )
        return min(wanted, config.max_positions - prompt_tokens)

    def seq2seq_task(self) -> Seq2SeqTask:
        """How this encoder-decoder reads and decodes: its trained task, or the defaults for a pretrained or
        imported one (a Hugging Face BART, Marian or T5)."""
        if isinstance(self.task, Seq2SeqTask):
            return self.task
        return make_task(TaskConfig(name="seq2seq"), DataConfig(), self.tokenizer, self.model.config)

    def with_decoding(self, beam_size: int | None = None, max_length: int | None = None) -> Pipeline:
        """The same model decoding with another beam size or maximum output length (seq2seq)."""
        task = self._task()
        if task.name != "seq2seq":
            raise AttnkitError(f"this model is a {task.name} model; only a seq2seq model generates text")
        copy = clone(task)
        if beam_size is not None:
            copy.config = dataclasses.replace(task.config, beam_size=beam_size)
        if max_length is not None:
            copy.data = dataclasses.replace(task.data, max_target_length=max_length)
        return Pipeline(self.model, self.tokenizer, copy, self.run, self.origin)

    def describe(self) -> str:
        """A few lines on the model: origin, task, architecture, sizes and parameter count (`attnkit info`)."""
        if self.origin != "attnkit":
            origin = [("format", f"Hugging Face {self.origin}")]
        elif self.task is not None:
            outputs = next((f"{len(v)} {k}" for k, v in self.task.state().items()), "")
            origin = [("task", self.task.name + (f", {outputs}" if outputs else ""))]
        else:
            origin = [("task", "none (fine-tune it with attnkit train --init)")]
        c: ModelConfig = self.model.config
        if c.arch == "encoder-decoder":
            layers = f"{c.num_layers} encoder + {c.decoder_layers} decoder layers"
            vocab = f"{c.vocab_size} source / {c.output_vocab_size} target"
            vocab += ", shared embeddings" if c.share_embeddings else ", separate embeddings"
        else:
            layers = f"{c.num_layers} {'causal ' if c.arch == 'decoder' else ''}layers"
            vocab = str(c.vocab_size)
        if c.arch != "encoder":
            vocab += ", tied output projection" if c.tie_output else ", separate output projection"
        rows = [
            *origin,
            ("arch", f"{c.arch}, {layers}"),
            ("width", f"dim {c.dim}, {c.num_heads} heads of {c.head_dim}, feed-forward {c.ff_dim} ({c.activation})"),
            ("norm", f"{c.norm}, {'pre-norm' if c.norm_first else 'post-norm'}"),
            ("positions", c.positions + (f" (up to {c.max_positions})" if c.positions == "learned" else "")),
            ("vocabulary", vocab),
            ("parameters", f"{count_parameters(self.model):,}"),
        ]
        return "\n".join(f"{key:<11} {value}" for key, value in rows)

    def _task(self) -> Task:
        if self.task is None:
            raise AttnkitError(
                "this model was not trained for a task; fine-tune it first: attnkit train ... --init PATH"
            )
        return self.task


def _refuse_a_string(texts: object) -> None:
    """A str is iterable too, and would be predicted one character at a time."""
    if isinstance(texts, str):
        raise AttnkitError("expected a list of texts, got one string; wrap it: predict([text])")


def unseen_message(path: str | os.PathLike, unseen: dict[str, int], unit: str, name: str, shown: int = 5) -> str:
    """E.g. "test.conll: 37 tokens carry 2 tags the model never saw ('HYPH', 'NFP'); they count as errors"."""
    count = sum(unseen.values())
    names = sorted(unseen, key=lambda label: -unseen[label])
    listed = ", ".join(repr(label) for label in names[:shown]) + (", ..." if len(names) > shown else "")
    carry = f"{count} {unit}{'s carry' if count != 1 else ' carries'}"
    labels = f"{len(names)} {name}{'s' if len(names) != 1 else ''}"
    verdict = "it counts as an error" if count == 1 else "they count as errors"
    return f"{path}: {carry} {labels} the model never saw ({listed}); {verdict}"


def encoder_of(model: nn.Module) -> Encoder | None:
    """The encoder inside a model: itself, an encoder-decoder's, or a task model's."""
    if isinstance(model, Encoder):
        return model
    inner = getattr(model, "encoder", None)
    return inner if isinstance(inner, Encoder) else None


def read_run(path: Path) -> tuple[RunConfig, dict]:
    """The run configuration and task state saved in a trained checkpoint's config.json."""
    data = read_checkpoint_json(path)
    where = str(path / "config.json")
    if "task" not in data:
        raise AttnkitError(f"{where}: a bare model without a task; train one with `attnkit train`")
    sections = {key: data[key] for key in ("task", "out", "data", "tokenizer", "model", "train") if key in data}
    state = data.get("task_state", {})
    if not isinstance(state, dict):
        raise AttnkitError(f"{where}: task_state: expected a mapping, got {state!r}")
    for key in ("labels", "tags"):  # what a classifier and a tagger name their outputs with
        names = state.get(key, [])
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)):
            raise AttnkitError(f"{where}: task_state.{key}: expected a list of distinct names, got {names!r}")
    return from_dict(RunConfig, sections, where), state


@torch.no_grad()
def predict_items(task: Task, model: nn.Module, items: list[dict], batch_tokens: int) -> list:
    """Predictions for encoded items, in their order, batched by length for speed, on the model's device."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions: list = [None] * len(items)
    for indices in batches_by_tokens(task.sizes(items), batch_tokens, shuffle=False):
        batch = to_device(task.collate([items[i] for i in indices]), device)
        for index, prediction in zip(indices, task.decode(model, batch)):
            predictions[index] = prediction
    model.train(was_training)
    return predictions


def load(path: str | os.PathLike, trust_pickle: bool = False, device: str = "auto", int8: bool = False) -> Pipeline:
    """The model at `path` (trained by attnkit, pretrained by attnkit, or a Hugging Face directory) on `device`,
    e.g. `attnkit.load("runs/sentiment").predict(["Great fun."])` or `attnkit.load(minilm_dir).encode(texts)`;
    `int8=True` for int8 linear layers on the CPU."""
    return Pipeline.load(path, trust_pickle, device, int8)
