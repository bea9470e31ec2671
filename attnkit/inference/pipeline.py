"""A checkpoint as something that predicts, evaluates, encodes and generates: `attnkit.load(path).predict(texts)`.
What the model does with an input is its task's business (attnkit.tasks); the pipeline loads, checks and batches.
An ensemble (several trained models of one task) is a pipeline too."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from copy import copy
from pathlib import Path

import torch
from torch import Tensor, nn

from attnkit.data.batching import BATCH_TOKENS, MAX_PADDING, batches_by_tokens
from attnkit.data.chat import Message, check_messages, render
from attnkit.data.readers import read_lines
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.inference.checkpoint import read_ensemble, read_model
from attnkit.interop.ct2 import has_ct2, on_ct2, runs_on_ct2
from attnkit.nn import count_parameters, describe
from attnkit.nn.decoding import Sampling, sampling_of
from attnkit.runtime import pack_linear_weights, quantize_int8, resolve_device
from attnkit.tasks import Task
from attnkit.tasks.base import NOT_TRAINED
from attnkit.tasks.generation import Generation, Stream

ENGINES = ("auto", "torch", "ct2")


class Pipeline:
    """A model with its tokenizer and its task: the one it was trained for (`attnkit train`), or for a pretrained or
    imported model, what its architecture allows (it encodes, or generates, and fine-tunes with --init)."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        task: Task,
        origin: str = "attnkit",
        batch_tokens: int = BATCH_TOKENS,
        generation: dict | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task = task
        self.origin = origin  # "attnkit", or the format the checkpoint was read from ("Hugging Face llama", "GGUF ...")
        self.batch_tokens = batch_tokens  # tokens in one batch of predictions: what the model was trained with
        self.engine = "torch"  # what runs the model: "torch", or CTranslate2's (attnkit.interop.ct2)
        # the generation defaults the checkpoint ships, as generation_config.json writes them (temperature, top_p,
        # top_k, repetition_penalty, do_sample, eos_token_id: the tokens that end an output)
        self.generation = generation or {}

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        trust_pickle: bool = False,
        device: str = "auto",
        int8: bool = False,
        engine: str = "torch",
    ) -> Pipeline:
        """The checkpoint at `path` on `device` (auto: a GPU if there is one), wherever it was trained; with
        `int8`, its linear layers in int8 (on the CPU: faster, at a small cost in accuracy). `engine` runs it:
        "torch" (attnkit's own), "ct2" (CTranslate2: the folder's own CTranslate2 model, written by `attnkit export
        --ct2`, else one converted on loading) or "auto" (ct2 when the folder holds a CTranslate2 model, or for
        int8 on the CPU where CTranslate2 is installed and runs the model: its int8 is faster than attnkit's own
        and as accurate as float32, docs/benchmarks.md). `engine` on the loaded pipeline says which ran."""
        if engine not in ENGINES:
            raise AttnkitError(f"engine {engine!r}: choose one of {', '.join(ENGINES)}")
        place = resolve_device("cpu" if int8 and device == "auto" else device)
        return cls._load(Path(path), trust_pickle, place, int8, engine)

    @classmethod
    def _load(cls, path: Path, trust_pickle: bool, place: torch.device, int8: bool, engine: str) -> Pipeline:
        members = read_ensemble(path)
        if members is not None:
            return Ensemble([cls._load(m, trust_pickle, place, int8, engine) for m in members], str(path))
        read = read_model(path, trust_pickle)
        pipeline = cls(read.model, read.tokenizer, read.task, read.origin, read.batch_tokens, read.generation)
        return pipeline._on(path, place, int8, engine)

    def _on(self, path: Path, place: torch.device, int8: bool, engine: str) -> Pipeline:
        """This pipeline with its model on `place`, run by `engine`."""
        exported = has_ct2(path)
        if engine == "auto" and int8 and place.type == "cpu" and runs_on_ct2(self.model):
            engine = "ct2"
        if engine == "ct2" or (engine == "auto" and exported):
            where = str(path)
            self.model = on_ct2(self.model, self.tokenizer, path if exported else None, place, int8, where).eval()
            self.engine = "ctranslate2" + (" int8" if int8 else "")
            self.model.to(place)  # the task's head, where CTranslate2 runs the encoder
            return self
        self.model.to(place)
        if int8:
            quantize_int8(self.model)  # refuses a GPU in one line
            self.engine = "torch int8"
        elif place.type == "cpu":
            pack_linear_weights(self.model)
        return self

    @property
    def members(self) -> list[Pipeline]:
        """The models that predict: this one, or an ensemble's."""
        return [self]

    def predict(self, texts: list) -> list:
        """One prediction per input text: classify and pair give {"label", "probability"}; tag, a tag per
        whitespace-separated word; seq2seq, the output text; regress, a number. A pair model takes (text_a, text_b)
        pairs. A blank input gives None (the model is not run)."""
        _refuse_a_string(texts)
        return self._predict(list(texts), "input")[1]

    def predict_lines(self, lines: Iterable[str], where: str = "input") -> tuple[list, list]:
        """The examples and predictions for one input per line (its line ending dropped), as `predict`: a blank
        line gives None. Input with no text on any line is an error that names `where` it came from."""
        _refuse_a_string(lines)
        texts = [line.rstrip("\n") for line in lines]
        if not any(text.strip() for text in texts):
            raise AttnkitError(f"{where}: no text to predict (one input per line)")
        return self._predict(texts, where)

    def _predict(self, raw: list, where: str) -> tuple[list, list]:
        examples = self.task.inputs(raw, where)
        kept = [i for i, item in enumerate(raw) if not self.task.blank(item)]
        predictions: list = [None] * len(raw)
        if kept:
            for i, prediction in zip(kept, self.predict_examples([examples[i] for i in kept])):
                predictions[i] = prediction
        return examples, predictions

    def predict_file(self, path: str | os.PathLike) -> tuple[list, list]:
        """The examples and predictions for a file: a .txt holds one input per line (see `predict_lines`); any
        other file is data in the task's format (.tsv, .csv, .jsonl, .conll), whose gold column is never read."""
        if Path(path).suffix == ".txt":
            return self.predict_lines(read_lines(path), str(path))
        examples = self._read(path, need_targets=False)
        return examples, self.predict_examples(examples)

    def _read(self, path: str | os.PathLike, need_targets: bool) -> list:
        """The examples of a data file that this model can read (a pair model's, pairs)."""
        if self.task.pretraining:
            raise AttnkitError(NOT_TRAINED)
        examples = self.task.read(self.task.data, path, need_targets)
        self.task.readable(examples, path)
        return examples

    def predict_examples(self, examples: list) -> list:
        items = self.task.encode(examples, training=False)
        return self.task.predict(self.model, items, self.batch_tokens)

    def evaluate(self, path: str | os.PathLike, warn: Callable[[str], None] | None = None) -> tuple[dict, list, list]:
        """Metrics on a labelled file, with its examples and the predictions. Gold labels the model never saw
        count as errors, and `warn` (default: warnings.warn) gets one line saying how many and which."""
        task = self.task
        examples = self._read(path, need_targets=True)
        unseen = task.unseen(examples)
        if unseen:
            (warn or warnings.warn)(unseen_message(path, unseen, task.gold_unit, task.gold_name))
        predictions = self.predict_examples(examples)
        return task.metrics(predictions, examples), examples, predictions

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """The model's last-layer states (batch, time, dim) for `texts`, each read as the model reads an input (an
        encoder's between its start and end tokens, cut to `max_input_tokens`; a language model's as a prompt), and
        the mask (batch, time) that is True on real tokens."""
        self._check_encodes()
        return self.task.encode_states(self.model, self.tokenizer.encode_batch(texts))

    def _check_encodes(self) -> None:
        if "encode" not in self.task.verbs:
            raise AttnkitError(f"this model ({self.task.describe()}) gives no states to encode a text with")

    @torch.no_grad()
    def embed(self, texts: list[str], normalize: bool = False) -> list[list[float]]:
        """One vector per text: the mean of the model's last-layer states over its real tokens (what
        sentence-embedding checkpoints such as all-MiniLM-L6-v2 are trained for; a language model's mean state), an
        embedding model's own (its pooling; of unit length where it normalizes), of unit length with `normalize`. A
        blank text (empty, or only spaces) gives the vector of the empty input, <s> </s>."""
        _refuse_a_string(texts)
        self._check_encodes()
        texts = [text if text.strip() else "" for text in texts]
        vectors: list = [None] * len(texts)
        token_ids = self.tokenizer.encode_batch(texts)
        sizes = [len(ids) + 2 for ids in token_ids]
        for indices in batches_by_tokens(
            sizes, BATCH_TOKENS, False, max_padding=MAX_PADDING
        ):  # similar lengths: little padding
            pooled = self.task.vectors(self.model, [token_ids[i] for i in indices])
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            for i, vector in zip(indices, pooled.float().cpu().tolist()):
                vectors[i] = vector
        return vectors

    @property
    def max_input_tokens(self) -> int | None:
        """The most tokens of one input the model reads, start and end tokens included (the task's limit: a longer
        input is cut, or a tagger reads it in windows), or None when it reads any length."""
        return self.task.max_input_tokens

    def over_limit(self, texts: list, encoding: bool = False) -> list[tuple[int, int] | None]:
        """For each input, (its tokens, the limit) if it has more tokens than the model reads, else None."""
        limit = self.max_input_tokens
        if limit is None:
            return [None] * len(texts)
        return [(count, limit) if count > limit else None for count in self.count_tokens(texts, encoding)]

    def count_tokens(self, texts: list, encoding: bool = False) -> list[int]:
        """The tokens of each input, uncut, that `predict` and `generate` read (the task says how), or with
        `encoding` that `encode` reads (an encoder's <s> text </s>)."""
        if not encoding:
            return self.task.count_tokens(texts)
        return [len(self.task.state_tokens(ids, cut=False)) for ids in self.tokenizer.encode_batch(texts)]

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int | None = None,
        beam_size: int | None = None,
        sampling: Sampling | None = None,
        stream: Stream | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        repetition_penalty: float | None = None,
        stop: Sequence[str] = (),
        templated: bool = False,
        report: Callable[[int, int, str], None] | None = None,
    ) -> list[str | None]:
        """One output per prompt: an encoder-decoder's output for its input text, a decoder's continuation of the
        prompt. Greedy or beam search (`beam_size`; default: a seq2seq model's own setting, else 1), or drawn with
        `sampling` (or `temperature`, `top_k`, `top_p`, `seed`); at most `max_new_tokens` (default: a seq2seq model's
        own limit; 64 for a decoder); ending at the model's end tokens and before any of the `stop` strings. A setting
        not given is the checkpoint's default (generation_config.json, a GGUF's sampling settings), else attnkit's
        (greedy). A blank prompt gives None. `stream(i, text)` receives each new piece of output i as it is decoded
        (beam search: the whole output at its end); prompts are then generated one at a time, in order, else in
        batches. `templated`: the prompts are chat templates' renderings (`chat` makes them). `report(i, tokens,
        finish)` receives the tokens output i generated and why it ended ("stop" or "length")."""
        _refuse_a_string(prompts)
        if sampling is None:
            sampling = sampling_of(temperature, top_k, top_p, seed, beam_size, self.generation)
        if repetition_penalty is None:
            repetition_penalty = float(self.generation.get("repetition_penalty") or 1.0)
        how = Generation(
            max_new_tokens,
            beam_size,
            sampling,
            stream,
            tuple(stop),
            self.end_ids,
            repetition_penalty,
            templated,
            report,
        )
        return self.task.generate(self.model, list(prompts), how)

    def chat(self, conversations: list[list[Message]], **options: object) -> list[str | None]:
        """The model's reply to each conversation (a list of {"role", "content"} messages), through its chat
        template; `options` are generate's."""
        prompts = [self.chat_prompt(messages, f"conversation {i}") for i, messages in enumerate(conversations)]
        return self.generate(prompts, templated=True, **options)

    def chat_prompt(self, messages: list[Message], where: str = "messages") -> str:
        """The prompt the model's chat template makes of `messages`, the assistant's turn opened."""
        if not self.chats:
            raise AttnkitError(
                "this model has no chat template (tokenizer_config.json's chat_template, a GGUF's "
                "tokenizer.chat_template): it does not chat; continue a prompt with attnkit generate"
            )
        token = self.tokenizer.backend.id_to_token
        specials = {f"{role}_token": None if i is None else token(i) for role, i in self._special_ids().items()}
        return render(self.tokenizer.chat_template, check_messages(messages, where), specials)

    @property
    def chats(self) -> bool:
        """Whether the model chats: it generates, and its tokenizer has a chat template."""
        return self.tokenizer.chat_template is not None and "generate" in self.task.verbs

    def _special_ids(self) -> dict[str, int | None]:
        t = self.tokenizer
        return {"bos": t.bos_id, "eos": t.eos_id, "unk": t.unk_id, "pad": t.pad_id}

    @property
    def end_ids(self) -> tuple[int, ...]:
        """The tokens that end an output beside the tokenizer's own end token: the checkpoint's (generation_config
        .json's eos_token_id, one or several; a GGUF's end of text, of turn, of message)."""
        ids = self.generation.get("eos_token_id")
        ids = [ids] if isinstance(ids, int) else ids if isinstance(ids, list) else []
        return tuple(i for i in ids if isinstance(i, int) and not isinstance(i, bool) and i >= 0)

    def with_decoding(self, beam_size: int | None = None, max_new_tokens: int | None = None) -> Pipeline:
        """The same model decoding with another beam size or number of new tokens (seq2seq)."""
        changed = copy(self)
        changed.task = self.task.with_decoding(beam_size, max_new_tokens)
        return changed

    def describe(self) -> str:
        """A few lines on the model: origin, task, architecture, sizes and parameter count (`attnkit info`)."""
        origin = [("format", self.origin)] if self.origin != "attnkit" else []
        if self.origin == "attnkit" or not self.task.pretraining:
            hint = " (fine-tune it with attnkit train --init)" if self.task.pretraining else ""
            origin.append(("task", self.task.describe() + hint))
        rows = [*origin, *describe(self.model.config, output="generate" in self.task.verbs)]  # a head replaces it
        if self.engine != "torch":
            rows.append(("engine", self.engine))
        if not self.engine.startswith("ctranslate2"):
            rows.append(("parameters", f"{count_parameters(self.model):,}"))
        return "\n".join(f"{key:<11} {value}" for key, value in rows)


class Ensemble(Pipeline):
    """Trained models of one task and label set (any architectures, tokenizers and random starts) that predict
    together: each reads the input its own way, and the mean of their outputs (probabilities; a regressor's
    numbers) is the prediction. It reads, evaluates, predicts and serves as one model; what it encodes or attends to
    is its first member's."""

    def __init__(self, members: list[Pipeline], where: str = "ensemble") -> None:
        first = members[0]
        for i, member in enumerate(members):
            task = member.task
            if not task.ensembles:
                kind = "a model without a task (pretrained or imported)" if task.pretraining else f"a {task.name} model"
                raise AttnkitError(
                    f"{where}: member {i} is {kind}; only classify, pair, regress and tag models ensemble"
                )
            if _shape(task) != _shape(first.task):
                raise AttnkitError(
                    f"{where}: member {i} is a {_describe_shape(task)} model, member 0 a "
                    f"{_describe_shape(first.task)} model; an ensemble's members share one task, input and label set"
                )
        super().__init__(first.model, first.tokenizer, first.task, "ensemble", first.batch_tokens)
        self._members = members
        # each member's outputs in member 0's order of labels (a tagger orders its tags by their frequency)
        names = first.task.output_names
        self._orders = [
            None if names is None else torch.tensor([member.task.output_names.index(name) for name in names])
            for member in members
        ]

    @property
    def members(self) -> list[Pipeline]:
        return self._members

    def predict_examples(self, examples: list) -> list:
        outputs = []
        for member, order in zip(self._members, self._orders):
            task = member.task
            each = task.predict(member.model, task.encode(examples, training=False), member.batch_tokens, True)
            outputs.append(each if order is None else [output[..., order] for output in each])
        return [self.task.prediction(torch.stack(each).mean(0)) for each in zip(*outputs)]

    @property
    def max_input_tokens(self) -> int | None:
        """The smallest of its members' limits."""
        limits = [member.max_input_tokens for member in self._members if member.max_input_tokens is not None]
        return min(limits) if limits else None

    def over_limit(self, texts: list, encoding: bool = False) -> list[tuple[int, int] | None]:
        """Each input over the limit of any member, counted by that member's tokenizer."""
        found: list[tuple[int, int] | None] = [None] * len(texts)
        for member in self._members:
            for i, over in enumerate(member.over_limit(texts, encoding)):
                found[i] = found[i] or over
        return found

    def describe(self) -> str:
        rows = [("task", self.task.describe()), ("ensemble", f"the mean of {len(self._members)} models' outputs")]
        for i, member in enumerate(self._members):
            config = member.model.config
            (_, arch), (_, width), *_ = describe(config)
            shape = f"{config.preset or 'attnkit'} {arch}, {width}"
            rows.append((f"member {i}", f"{shape}, {count_parameters(member.model):,} parameters"))
        return "\n".join(f"{key:<11} {value}" for key, value in rows)


def _shape(task: Task) -> tuple:
    """What the members of an ensemble share: the task, its inputs, and its outputs (in any order)."""
    return task.name, task.input_fields, sorted(task.output_names or [])


def _describe_shape(task: Task) -> str:
    """E.g. "classify (text -> negative, positive)"."""
    names = task.output_names or ["a number"]
    outputs = ", ".join(names[:4]) + (f", ... ({len(names)})" if len(names) > 4 else "")
    return f"{task.name} ({' + '.join(task.input_fields)} -> {outputs})"


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


def load(
    path: str | os.PathLike, trust_pickle: bool = False, device: str = "auto", int8: bool = False, engine: str = "auto"
) -> Pipeline:
    """The model at `path` (trained by attnkit, pretrained by attnkit, or a Hugging Face directory) on `device`,
    e.g. `attnkit.load("runs/sentiment").predict(["Great fun."])` or `attnkit.load(minilm_dir).encode(texts)`;
    `int8=True` for int8 linear layers on the CPU; `engine="ct2"` to run it on CTranslate2 (by default, a folder
    written by `attnkit export --ct2` runs on it)."""
    return Pipeline.load(path, trust_pickle, device, int8, engine)
