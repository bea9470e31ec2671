"""What every task shape knows, and what the loop, the pipeline, the server, the exporters and the attention maps ask
it: how its examples are read, tokenized, batched, scored and decoded; its input limit and token count; which verbs
it serves; how it starts from a pretrained checkpoint; its Hugging Face head and ONNX graphs. Nothing outside
attnkit.tasks branches on a task's name or a model's class: a new shape is a file here and a line in TASKS.

The defaults are those of an encoder that reads one text and gives one output per text (classify); a shape
overrides what it does otherwise."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from attnkit.config import DataConfig, ModelConfig, TaskConfig
from attnkit.data.batching import BATCH_TOKENS, MAX_PADDING, Size, batches_by_tokens, pad
from attnkit.data.item_files import Items
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.findings import Finding
from attnkit.interop.hf import TaskExport
from attnkit.nn import Decoder, Encoder, encoder_of
from attnkit.runtime import to_device
from attnkit.tasks.generation import Generation
from attnkit.tasks.graphs import Graph

Batch = dict[str, Tensor]
FEW = 20_000  # training from scratch on fewer examples than this, a pretrained checkpoint usually does better
NO_DECODER = "this model has no decoder: it cannot generate text (an encoder classifies and tags)"
NOT_TRAINED = "this model was not trained for a task; fine-tune it first: attnkit train ... --init PATH"


def hf_labels(hf: dict) -> list[str]:
    """A Hugging Face task model's outputs by name: config.json's id2label in order of id."""
    names = hf.get("id2label") or {}
    if not isinstance(names, dict) or not names:
        count = hf.get("num_labels", 2)
        return [f"LABEL_{i}" for i in range(count if isinstance(count, int) and count > 0 else 2)]
    try:
        return [str(names[key]) for key in sorted(names, key=int)]
    except (TypeError, ValueError):
        raise AttnkitError(f"id2label: expected ids as keys, got {sorted(names)[:3]}") from None


@dataclass
class AttentionInput:
    """One input as `attnkit attention` reads it: a batch of one that the task's `forward` runs, the token ids of
    each sequence in it ("ids", or "source" and "target"), and what the model made of the input."""

    batch: Batch
    tokens: dict[str, list[int]]
    prediction: str | None = None
    target: str | None = None
    stack: str = "encoder"  # the stack whose layers' names carry no prefix in the model (a bare decoder's)


class TaskModel(nn.Module):
    """A task's model that reads its input with a Transformer body and puts a head on the body's states: an
    encoder (`encoder`), or a decoder language model without its output projection (`decoder`), each of whose states
    sees its token and those before it, as transformers' *ForSequenceClassification of GPT-2 and Llama read them."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        causal = config.arch == "decoder"
        self.encoder = None if causal else Encoder(config)
        self.decoder = Decoder(config, output=False) if causal else None

    @property
    def body(self) -> nn.Module:
        """The encoder or the decoder: the part a pretrained checkpoint fills."""
        return self.encoder if self.decoder is None else self.decoder

    def states(
        self,
        ids: Tensor,
        mask: Tensor,
        features: Tensor | None = None,
        segments: Tensor | None = None,
        first_only: bool = False,
    ) -> Tensor:
        """The body's last states (batch, time, dim); `features` are added to the embeddings of an encoder's tokens,
        `segments` name their texts (BERT's token types); `first_only`: an encoder's may be the first position's
        alone (batch, 1, dim), for a head that reads no other."""
        if self.decoder is None:
            return self.encoder(ids, mask, features, segments=segments, first_only=first_only)
        if features is not None or segments is not None:
            raise ValueError("a decoder reads tokens alone: no word shapes, no segments")
        return self.decoder.hidden_states(ids, mask)


def outside(model: nn.Module, body: nn.Module) -> set[str]:
    """The names of the weights of `model` that are not `body`'s."""
    inside = {id(t) for t in body.state_dict(keep_vars=True).values()}
    return {name for name, t in model.state_dict(keep_vars=True).items() if id(t) not in inside}


class Reading:
    """How a task's model reads one text (Task's defaults): the special tokens around it, the most tokens it
    reads, its last layer's states and its vector."""

    specials = "both"  # special tokens around an input: both (<s> text </s>), end (text </s>) or none
    tokenizer: Tokenizer
    model_config: ModelConfig
    data: DataConfig

    def framed(self, ids: list[int]) -> list[int]:
        """A text's ids with the special tokens the model reads around them: an encoder's <s> text </s>; a
        decoder's start token, where its tokenizer puts one, and the text (whose last token's state is the text's,
        as transformers' decoder classifiers read it)."""
        if self.model_config.arch == "decoder":
            return self.tokenizer.prompt_start + ids
        return self.tokenizer.add_specials(ids)

    @property
    def exported_specials(self) -> str | None:
        """The special tokens a Hugging Face export's tokenizer adds around a text (see TaskExport.specials): the
        task's own for an encoder; a decoder's tokenizer as it came (None)."""
        return None if self.model_config.arch == "decoder" else self.specials

    def state_tokens(self, ids: list[int], cut: bool = True) -> list[int]:
        """The tokens `encode_states` reads of a text's ids (`framed`), cut to max_input_tokens (unless not
        `cut`)."""
        limit, specials = self.max_input_tokens, len(self.framed([]))
        keep = None if limit is None or not cut else limit - specials
        return self.framed(ids[:keep])

    def encode_states(self, model: nn.Module, token_ids: list[list[int]]) -> tuple[Tensor, Tensor]:
        """The last layer's states (batch, time, dim) of texts' tokens read as one input each (`state_tokens`), and
        the mask (batch, time) of their real tokens."""
        encoder = encoder_of(model)
        ids, mask = self.state_batch(encoder, token_ids)
        return encoder(ids, mask), mask

    def state_batch(self, model: nn.Module, token_ids: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Texts' `state_tokens` padded into ids and mask (batch, time), on `model`'s device."""
        ids, mask = pad([self.state_tokens(t) for t in token_ids], self.tokenizer.pad_id)
        device = next(model.parameters()).device
        return ids.to(device), mask.to(device)

    def vectors(self, model: nn.Module, token_ids: list[list[int]]) -> Tensor:
        """A vector (batch, dim) per text's ids: the mean of its `encode_states` (an embedding model's own pooling)."""
        states, mask = self.encode_states(model, token_ids)
        return (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)

    # limits
    @property
    def max_input_tokens(self) -> int | None:
        """The most tokens of one input the model reads, special tokens included (a longer one is cut), or None
        when it reads any length."""
        return self.data.max_length

    def count_tokens(self, raw: list) -> list[int]:
        """The tokens of each raw input, uncut, that prediction reads (special tokens included)."""
        specials = len(self.framed([]))
        return [len(ids) + specials for ids in self.tokenizer.encode_batch(list(raw))]


class Task(Reading):
    """A task shape, made once its tokenizer and model configuration exist. `state` holds what was learned from
    the training data (the label set), saved in config.json so that a loaded checkpoint decodes the same way.
    Reading data and the tokenizer's training texts need no task (`TASKS[name].read(data, path)`): a new run reads
    its training examples before the tokenizer they train exists."""

    name: str | None = ""
    arch: str | None = "encoder"  # the architecture of this task's models; None: any (pretraining)
    main_metric = ""
    lower_is_better: frozenset[str] = frozenset()
    gold_unit, gold_name = "example", "label"  # what carries a gold label, and what one is called (for warnings)
    input_fields: tuple[str, ...] = ("text",)  # one input's fields in a request; the plural form is input_name + s
    input_name = "text"
    few_examples: int | None = FEW  # fewer training examples than this: advise a pretrained checkpoint
    reads_decoders = False  # a decoder checkpoint starts a model of this task on its states (a TaskModel's decoder)
    pretraining = False  # a model of this task is a starting point: it predicts nothing until fine-tuned
    similar = False  # the cosine of two texts' vectors says how alike they are (the try page compares two)
    columns: str | None = None  # the table columns its model trained on, input -> target ("text -> label")

    def __init__(
        self,
        config: TaskConfig,
        data: DataConfig,
        tokenizer: Tokenizer,
        model_config: ModelConfig,
        state: dict | None = None,
    ) -> None:
        self.config = config
        self.data = data
        self.tokenizer = tokenizer
        self.model_config = model_config

    @property
    def verbs(self) -> frozenset[str]:
        """What a model of this task serves: predict, generate (a decoder), encode (an encoder), attention."""
        return frozenset({"predict", "attention"} | ({"encode"} if self.model_config.arch == "encoder" else set()))

    @property
    def metric(self) -> str:
        """The dev metric that picks the best checkpoint (see `better`)."""
        return self.config.metric or self.main_metric

    def better(self, value: float, best: float) -> bool:
        """Whether `value` of the task's metric improves on `best`."""
        return value < best if self.metric in self.lower_is_better else value > best

    def state(self) -> dict:
        return {}

    @property
    def output_names(self) -> list[str] | None:
        """The names of the model's outputs (a classifier's labels, a tagger's tags), if it has names."""
        return None

    def describe(self) -> str:
        """The task in a few words, its outputs named: "classify: bad, good"."""
        names = self.output_names
        if not names:
            return str(self.name)
        return f"{self.name}: {', '.join(names[:8])}" + (f", ... ({len(names)} in all)" if len(names) > 8 else "")

    # data
    @classmethod
    def read(cls, data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Sequence:
        """The examples of a data file, read as `data` says (its columns, its block length), all in memory."""
        return list(cls.stream(data, path, need_targets))

    @staticmethod
    def stream(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Iterator:
        """The examples of a data file one at a time, read as `data` says, the file read as a stream (a training
        file is tokenized into a cache this way, whatever its size: attnkit.training.cache)."""
        raise NotImplementedError

    def inputs(self, raw: list, where: str = "input") -> list:
        """Examples to predict for, one per raw input (a text; a pair task also takes pairs), numbered from 1;
        `where` names where they came from, for the errors of a shape that can refuse one (a pair's). A blank input
        gives an example too, which the pipeline does not run (see `blank`)."""
        return [self.example(text, i + 1) for i, text in enumerate(raw)]

    def example(self, text: str, line: int) -> object:
        """The example of one text to predict for, without its gold label."""
        raise NotImplementedError

    def blank(self, raw: object) -> bool:
        """Whether a raw input holds nothing to predict for (no prediction is made: it gives None)."""
        return not raw.strip()

    def fit(self, examples: list) -> None:
        """Learn what the training data decides (labels); the default learns nothing."""

    def readable(self, examples: list, path: str | os.PathLike) -> None:
        """Refuse examples this model cannot read (a model of pairs given single texts); the default reads any."""

    def check(self, examples: list, path: str | os.PathLike) -> None:
        """Refuse dev or test data of a training run whose labels the training data lacks (a label never seen)."""

    def unseen(self, examples: list) -> Counter[str]:
        """Gold labels the model never saw, each with how many examples (or tokens) carry it: evaluation counts
        them as errors, since no prediction can match them."""
        return Counter()

    @staticmethod
    def tokenizer_texts(examples: list) -> Iterator[str]:
        """The texts a new tokenizer learns its vocabulary from."""
        raise NotImplementedError

    def encode(self, examples: list, training: bool) -> list[dict]:
        raise NotImplementedError

    def size(self, item: dict) -> Size:
        """Tokens of one encoded example, for batching by token budget; a tuple where a batch pads more than one
        tensor (see batches_by_tokens)."""
        return len(item["ids"])

    def sizes(self, items: Sequence[dict]) -> list[Size] | np.ndarray:
        """Each item's `size`; the token cache's items (Items) keep theirs in memory, an array."""
        return items.sizes if isinstance(items, Items) else [self.size(item) for item in items]

    def collate(self, items: list[dict]) -> Batch:
        """One batch of encoded items, token ids padded with the tokenizer's padding id."""
        raise NotImplementedError

    @classmethod
    def of_arch(cls, arch: str | None) -> type[Task]:
        """The class of this task shape for a model of `arch` (a shape may read one architecture its own way)."""
        return cls

    @classmethod
    def started_arch(cls, run_arch: str, checkpoint_arch: str) -> str:
        """The architecture of a model of this task started from a checkpoint of `checkpoint_arch`: the task's own
        (the run's), or a decoder's where the task reads a decoder's states (`reads_decoders`); pretraining goes on
        in the checkpoint's."""
        return checkpoint_arch if cls.reads_decoders and checkpoint_arch == "decoder" else run_arch

    @classmethod
    def of_head(cls, head: str, hf: dict) -> dict | None:
        """The state of this task for a Hugging Face model of a family's `head` class ("sequence": an output per
        input, "token": an output per token) whose config.json is `hf` (its id2label), if this task is what such a
        model does; None if it is not."""
        return None

    # model
    def build_model(self) -> nn.Module:
        """A new model of the task's model_config (freshly initialized)."""
        raise NotImplementedError

    def initialize(self, model: nn.Module, source: nn.Module, where: str, trust_pickle: bool = False) -> None:
        """Copy the pretrained part of `source` (a checkpoint's model, read from `where`) into a new task model:
        its encoder, or a decoder's layers (a language model's or a task model's, without an output projection)."""
        if isinstance(model, TaskModel) and model.decoder is not None:
            decoder = source.decoder if isinstance(source, TaskModel) else source
            state = decoder.state_dict()
            model.decoder.load_state_dict({name: state[name] for name in model.decoder.state_dict()})
            return
        encoder = encoder_of(source)
        if encoder is None:
            raise AttnkitError(f"{where}: has no encoder to start a {type(model).__name__.lower()} from")
        model.encoder.load_state_dict(encoder.state_dict())

    def head(self, model: nn.Module) -> set[str]:
        """The names of the weights of `model` (a model of this task) outside what a pretrained checkpoint fills:
        its head, which trains in full beside LoRA's adapters (a classifier's pooler and layer; nothing for a model
        the checkpoint fills whole)."""
        return outside(model, model.body if isinstance(model, TaskModel) else model)

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        """The model's outputs for a collated batch."""
        return model(batch["ids"], batch["mask"])

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """The summed loss over the batch's targets and their count: the trainer divides the sum over a whole
        step (all accumulated batches, all processes) by the count over it, so that how a step's examples are
        split into batches or among processes does not change its gradient."""
        raise NotImplementedError

    # an ensemble of models of this task (and label set) predicts from the mean of their `outputs`
    ensembles = False

    def decode(self, model: nn.Module, batch: Batch) -> list:
        return [self.prediction(output) for output in self.outputs(model, batch)]

    def outputs(self, model: nn.Module, batch: Batch) -> list[Tensor]:
        """Per example, what the model gives in a form that any model of the task and its label set gives alike,
        whatever its architecture and tokenizer (a classifier's probabilities, a tagger's per word, a regressor's
        number), so that an ensemble can average them; `prediction` reads one."""
        raise NotImplementedError

    def prediction(self, output: Tensor) -> object:
        raise NotImplementedError

    @torch.no_grad()
    def predict(
        self, model: nn.Module, items: list[dict], batch_tokens: int = BATCH_TOKENS, outputs: bool = False
    ) -> list:
        """Predictions for encoded items (or with `outputs`, their `outputs`, on the CPU), in their order, batched by
        length for speed, on the model's device."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        predictions: list = [None] * len(items)
        for indices in batches_by_tokens(self.sizes(items), batch_tokens, False, max_padding=MAX_PADDING):
            batch = to_device(self.collate([items[i] for i in indices]), device)
            results = [o.cpu() for o in self.outputs(model, batch)] if outputs else self.decode(model, batch)
            for index, prediction in zip(indices, results):
                predictions[index] = prediction
        model.train(was_training)
        return predictions

    # results
    def metrics(self, predictions: list, examples: list) -> dict[str, float]:
        raise NotImplementedError

    def report(self, metrics: dict) -> str:
        """A human-readable summary of `metrics` (tables for evaluate)."""
        return "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))

    def examine(self, metrics: dict, examples: list, predictions: list) -> list[Finding]:
        """What `attnkit evaluate --report` shows beyond the metrics (tasks/findings.py): none by default."""
        return []

    def render(self, prediction: object) -> str:
        """One prediction as a line of `attnkit predict` output."""
        raise NotImplementedError

    def caption(self, prediction: object) -> str:
        """One prediction in a few words, beside the attention maps."""
        return self.render(prediction)

    def record(self, example: object, prediction: object) -> dict:
        """One prediction as a JSON object (`attnkit predict --json`)."""
        raise NotImplementedError

    # generation
    def generate(self, model: nn.Module, prompts: list[str], how: Generation) -> list[str | None]:
        """One output per prompt, generated `how` the user asks (a blank prompt gives None); a task whose model has
        no decoder refuses."""
        raise AttnkitError(NO_DECODER)

    def with_decoding(self, beam_size: int | None = None, max_new_tokens: int | None = None) -> Task:
        """The same task decoding with another beam size or number of new tokens (a task that generates)."""
        raise AttnkitError(f"this model ({self.describe()}) has no decoding settings to change (a seq2seq model has)")

    # attention
    def attention_input(self, model: nn.Module, text: str, target: str | None = None) -> AttentionInput:
        """The batch of one that the attention maps of `text` are read from, with the model's prediction."""
        if target is not None:
            raise AttnkitError("--target is for encoder-decoder models; this model reads one text")
        items = self.encode(self.inputs([text], "text"), training=False)
        prediction = self.predict(model, items)[0]
        return AttentionInput(self.collate(items), {"ids": items[0]["ids"]}, self.caption(prediction))

    # exports
    def hf_export(self, model: nn.Module) -> TaskExport:
        """What a Hugging Face directory must hold for transformers to predict as this task's `model` does."""
        raise AttnkitError(f"a {self.name} model has no Hugging Face form")

    def onnx_graphs(self, model: nn.Module) -> tuple[list[Graph], dict]:
        """The ONNX graphs of `model`, and what onnx.json says of its outputs (its labels, its decoder's start)."""
        raise AttnkitError(f"a {self.name} model has no ONNX form")
