"""Configuration dataclasses, and the one place that checks a config a user wrote.

A checkpoint's config.json holds these dataclasses as JSON, so loading a model needs no code from the user.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from attnkit.data.readers import read_text
from attnkit.errors import AttnkitError

Arch = Literal["encoder", "decoder", "encoder-decoder"]
Activation = Literal["relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu", "geglu_tanh"]
Norm = Literal["layernorm", "rmsnorm"]
Positions = Literal["none", "sinusoidal", "learned", "relative", "rotary", "alibi"]
Preset = Literal["bert", "bart", "marian", "t5", "gpt2"]

# the model settings each Hugging Face family's architecture fixes (a tuple: one of these, the first by default);
# `model.preset` fills them in, and attnkit.interop.hf exports a model as the family whose settings it has
_BART = dict(
    arch="encoder-decoder",
    norm="layernorm",
    norm_first=False,
    positions="learned",
    embedding_norm=True,
    bias=True,
    attention_scale=None,
    share_embeddings=True,
    tie_output=True,
    output_bias=True,
    norm_eps=1e-5,
    output_scale=1.0,
    activation=("gelu", "gelu_tanh", "relu", "silu"),
)
PRESETS: dict[str, dict[str, object]] = {
    "bert": dict(
        arch="encoder",
        norm="layernorm",
        norm_first=False,
        positions="learned",
        embedding_norm=True,
        scale_embeddings=False,
        bias=True,
        attention_scale=None,
        activation=("gelu", "gelu_tanh", "relu", "silu"),
    ),
    "bart": _BART,
    # Marian is BART's layout with sinusoidal positions, no embedding norm, and (by default) swish
    "marian": {
        **_BART,
        "positions": "sinusoidal",
        "embedding_norm": False,
        "activation": ("silu", "gelu", "gelu_tanh", "relu"),
    },
    "t5": dict(
        arch="encoder-decoder",
        norm="rmsnorm",
        norm_first=True,
        positions="relative",
        embedding_norm=False,
        scale_embeddings=False,
        bias=False,
        attention_scale=1.0,
        share_embeddings=True,
        output_bias=False,
        activation=("relu", "geglu_tanh", "swiglu", "gelu"),
    ),
    "gpt2": dict(
        arch="decoder",
        norm="layernorm",
        norm_first=True,
        positions="learned",
        embedding_norm=False,
        scale_embeddings=False,
        bias=True,
        attention_scale=None,
        tie_output=True,
        output_bias=False,
        output_scale=1.0,
        activation=("gelu_tanh", "gelu", "relu", "silu"),
    ),
}


@dataclass
class ModelConfig:
    """Every architecture choice of an attnkit Transformer. The defaults build a small pre-norm encoder."""

    arch: Arch = "encoder"
    vocab_size: int = 8000
    target_vocab_size: int | None = None  # encoder-decoder with its own target vocabulary; None shares vocab_size
    dim: int = 256  # d_model in the paper
    num_heads: int = 4  # h
    ff_dim: int = 1024  # d_ff
    num_layers: int = 4  # N: encoder layers, or decoder layers for arch="decoder"
    num_decoder_layers: int | None = None  # encoder-decoder only; None means num_layers
    dropout: float = 0.1
    attention_dropout: float = 0.0
    token_dropout: float = 0.0  # in training, drop whole token embeddings with this probability (word dropout)
    activation: Activation = "gelu"
    norm: Norm = "layernorm"
    norm_eps: float = 1e-5
    norm_first: bool = True  # pre-norm (stable without warmup tricks); False is the paper's post-norm
    positions: Positions = "sinusoidal"
    max_positions: int = 512  # size of the learned position table; other schemes extrapolate beyond it
    relative_buckets: int = 32
    relative_max_distance: int = 128
    rotary_base: float = 10000.0
    scale_embeddings: bool = True  # multiply token embeddings by sqrt(dim) (the paper): unit scale beside sinusoids
    embedding_norm: bool = False  # a norm right after the embeddings (BERT, BART)
    bias: bool = True  # biases in the attention and feed-forward projections
    attention_scale: float | None = None  # None is 1/sqrt(head_dim); T5 uses 1.0
    share_embeddings: bool = True  # encoder-decoder: source and target share one embedding table
    tie_output: bool = True  # the output projection reuses the target embedding matrix
    output_bias: bool = False
    output_scale: float = 1.0  # multiplies the decoder's last states before the output projection (T5: dim^-0.5)
    pad_id: int = 0
    decoder_start_id: int | None = None  # the first decoder input; None: the tokenizer's start token <s>
    preset: Preset | None = None  # the Hugging Face family whose architecture this is (see PRESETS)

    def __post_init__(self) -> None:
        positive = ("vocab_size", "target_vocab_size", "dim", "num_heads", "ff_dim", "num_layers")
        _at_least(1, "model", self, *positive, "num_decoder_layers", "max_positions")
        _at_least(1, "model", self, "relative_buckets", "relative_max_distance")
        _at_least(0, "model", self, "pad_id", "decoder_start_id")
        _in_range("model", self, "norm_eps", 0, None, low_open=True)
        _in_range("model", self, "rotary_base", 1, None, low_open=True)
        if self.dim % self.num_heads:
            raise AttnkitError(f"model.dim ({self.dim}) must be divisible by model.num_heads ({self.num_heads})")
        if self.positions == "rotary" and (self.dim // self.num_heads) % 2:
            raise AttnkitError("model.positions=rotary needs an even head dimension (dim / num_heads)")
        if (
            self.arch == "encoder-decoder"
            and self.share_embeddings
            and self.target_vocab_size
            not in (
                None,
                self.vocab_size,
            )
        ):
            raise AttnkitError("model.share_embeddings needs target_vocab_size equal to vocab_size (or unset)")
        for name in ("dropout", "attention_dropout", "token_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise AttnkitError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers if self.num_decoder_layers is not None else self.num_layers

    @property
    def output_vocab_size(self) -> int:
        return self.target_vocab_size if self.target_vocab_size is not None else self.vocab_size


TaskName = Literal["classify", "tag", "seq2seq", "pretrain"]
ARCH_OF_TASK: dict[str, str] = {"classify": "encoder", "tag": "encoder", "seq2seq": "encoder-decoder"}
FINE_TUNABLE = {"dropout", "attention_dropout", "token_dropout"}  # model settings that train.init leaves open


@dataclass
class TaskConfig:
    """What the model is trained to do, and the options of that task shape."""

    name: TaskName = "classify"
    # classify: average or maximum of the states, the first, or BERT's pooler (first, dense, tanh); None: the
    # architecture's own (pooler for model.preset bert, else mean)
    pooling: Literal["mean", "max", "first", "pooler"] | None = None
    beam_size: int = 4  # seq2seq decoding; 1 is greedy
    length_penalty: float = 1.0  # seq2seq: hypotheses are ranked by log-probability / length ** length_penalty
    no_repeat_ngram: int = 0  # seq2seq: if n > 0, no n-gram occurs twice in an output
    metric: str | None = None  # the dev metric that picks the best checkpoint; None: the task's main metric
    # tag: the encoder also reads each word's shape (lower, Title, UPPER, digits...), which an uncased
    # checkpoint's tokenizer drops (all-MiniLM-L6-v2 lowercases: proper nouns look like common ones)
    word_shapes: bool = False
    mask_fraction: float | None = None  # pretrain: share of tokens corrupted; None: 0.15 (masked LM), 0.3 (infilling)

    def __post_init__(self) -> None:
        if self.mask_fraction is not None and not 0 < self.mask_fraction < 1:
            raise AttnkitError(f"task.mask_fraction must be in (0, 1), not {self.mask_fraction}")
        _at_least(1, "task", self, "beam_size")
        _at_least(0, "task", self, "no_repeat_ngram")


@dataclass
class DataConfig:
    """Where the examples are and which columns hold what. Paths are relative to the working directory."""

    train: str | None = None
    dev: str | None = None
    test: str | None = None
    text_column: str = "text"  # classification files (TSV, CSV, JSONL)
    label_column: str = "label"
    source_column: str = "source"  # parallel files
    target_column: str = "target"
    max_length: int = 256  # tokens of input kept; longer inputs are truncated
    max_target_length: int = 256  # seq2seq: tokens of target kept in training, and the longest output generated
    cache: str | None = None  # pretrain: where the tokenized corpus goes (default: OUT.corpus beside the output)
    dev_fraction: float | None = None  # without a dev file: hold out this share of the training file as dev
    test_fraction: float | None = None  # without a test file: hold out this share of the training file as test

    def __post_init__(self) -> None:
        for name, file in (("dev_fraction", self.dev), ("test_fraction", self.test)):
            value = getattr(self, name)
            if value is not None and (file or not 0 < value < 1):
                raise AttnkitError(f"data.{name} must be in (0, 1) and is used only without a {name[:-9]} file")
        _at_least(1, "data", self, "max_length", "max_target_length")


def _at_least(minimum: int, section: str, config: object, *names: str) -> None:
    """Each of `names` (an int setting of `config`) is unset (None) or at least `minimum`."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise AttnkitError(f"{section}.{name} must be at least {minimum}, got {value}")


def _in_range(
    section: str,
    config: object,
    name: str,
    low: float,
    high: float | None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Setting `name` of `config` is unset (None) or within [low, high] (open where said; no high: unbounded)."""
    value = getattr(config, name)
    if value is None:
        return
    below = value <= low if low_open else value < low
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left, right = "(" if low_open else "[", ")" if high_open or high is None else "]"
        raise AttnkitError(
            f"{section}.{name} must be in {left}{low}, {'inf' if high is None else high}{right}, got {value}"
        )


@dataclass
class TokenizerConfig:
    """A subword tokenizer trained on the training data, or loaded from a tokenizer.json."""

    kind: Literal["bpe", "wordpiece", "unigram", "word"] = "bpe"  # word: whole words split on spaces
    vocab_size: int = 8000
    min_frequency: int = 2
    lowercase: bool = False
    path: str | None = None  # a tokenizers tokenizer.json to use instead of training one

    def __post_init__(self) -> None:
        _at_least(1, "tokenizer", self, "vocab_size")
        _at_least(0, "tokenizer", self, "min_frequency")


@dataclass
class TrainConfig:
    """The optimization: AdamW with warmup and a decay schedule, batches by token budget."""

    epochs: int = 10
    max_steps: int | None = None  # train this many optimizer steps, whatever epochs says (patience may stop sooner)
    max_minutes: float | None = None  # stop after this much wall time
    batch_tokens: int | None = None  # tokens (padding included) in one batch; None: 4,096, fewer for small data
    accumulate: int = 1  # batches per optimizer step
    lr: float = 5e-4
    schedule: Literal["linear", "cosine", "inverse_sqrt", "constant"] = "linear"
    warmup_steps: int | None = None  # None: 200, or a tenth of the run if that is shorter
    weight_decay: float = 0.01
    clip_norm: float | None = 1.0
    label_smoothing: float = 0.1  # seq2seq and classify
    precision: Literal["float32", "bfloat16", "float16"] = "float32"  # autocast; float16 with a gradient scaler
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps; auto: cuda if there is a GPU, else mps, else cpu
    strategy: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: a copy of the model per process, or shards of it
    eval_every: int | None = None  # optimizer steps between dev evaluations; None: once per epoch
    eval_examples: int | None = None  # score only the first N dev examples during training (seq2seq is slow)
    patience: int | None = 5  # evaluations without improvement before stopping; None: never stop early
    nonfinite_limit: int = 5  # a step whose loss or gradient is not finite is skipped; this many in a row stop the run
    ema: float | None = None  # evaluate and save an exponential moving average of the weights (e.g. 0.999)
    log_every: int = 50
    seed: int = 1
    init: str | None = None  # start from this checkpoint (attnkit or Hugging Face directory) and fine-tune it
    layer_decay: float = 1.0  # with init: layer i of N learns at lr * layer_decay ** (N - i), embeddings lowest
    freeze_embeddings: bool = False  # with init: keep the token and position embeddings as they are
    trust_pickle: bool = False  # with init: allow a pytorch_model.bin (unpickling can run code)

    def __post_init__(self) -> None:
        _at_least(1, "train", self, "epochs", "max_steps", "batch_tokens", "accumulate", "eval_every")
        _at_least(1, "train", self, "eval_examples", "patience", "nonfinite_limit", "log_every")
        _at_least(0, "train", self, "warmup_steps")
        _in_range("train", self, "max_minutes", 0, None, low_open=True)
        _in_range("train", self, "lr", 0, None)
        _in_range("train", self, "weight_decay", 0, None)
        _in_range("train", self, "clip_norm", 0, None, low_open=True)
        _in_range("train", self, "label_smoothing", 0, 1, high_open=True)
        _in_range("train", self, "ema", 0, 1, low_open=True, high_open=True)
        _in_range("train", self, "layer_decay", 0, 1, low_open=True)
        _in_range("train", self, "seed", 0, 2**32 - 1)  # what numpy's generator takes


@dataclass
class RunConfig:
    """Everything `attnkit train` needs; `attnkit train run.yaml` is `attnkit.train(RunConfig.from_yaml(...))`."""

    task: TaskConfig = field(default_factory=TaskConfig)
    out: str = "runs/model"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
        values = read_yaml(Path(path))
        return cls.from_values(values, str(path), overrides)

    @classmethod
    def from_values(cls, values: object, where: str, overrides: list[str] | None = None) -> RunConfig:
        """Build from parsed YAML plus "section.key=value" overrides; the task decides the architecture and
        the tokenizer decides the vocabulary, so the model section may not set them differently."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise AttnkitError(f"{where}: expected a mapping of sections, got {type(values).__name__}")
        values = copy.deepcopy(values)  # overrides and defaults below must not change the caller's dict
        for override in overrides or []:
            apply_override(values, override)
        model = values.get("model") or {}
        train = values.get("train") or {}
        if isinstance(model, dict) and isinstance(train, dict) and train.get("init"):
            fixed = sorted(set(model) - FINE_TUNABLE)
            if fixed:
                at = located(where, model, fixed[0])
                raise AttnkitError(
                    f"{at}: model.{fixed[0]}: the architecture comes from train.init; only "
                    f"{', '.join(sorted(FINE_TUNABLE))} can be set when fine-tuning"
                )
        if isinstance(model, dict):
            for key in ("vocab_size", "target_vocab_size"):
                if key in model:
                    raise AttnkitError(
                        f"{located(where, model, key)}: model.{key}: set by the tokenizer (use tokenizer.vocab_size)"
                    )
            task = values.get("task") or {}
            name = task.get("name", "classify") if isinstance(task, dict) else None
            name = name if isinstance(name, str) else None  # from_dict below says what is wrong with another
            if model.get("preset") is not None:
                apply_preset(model, name, where)
            if name in ARCH_OF_TASK:
                arch = model.setdefault("arch", ARCH_OF_TASK[name])
                if arch != ARCH_OF_TASK[name]:
                    needs = f"task {name} needs {ARCH_OF_TASK[name]!r}, got {arch!r}"
                    raise AttnkitError(f"{located(where, model, 'arch')}: model.arch: {needs}")
            values["model"] = model  # values is a copy: its mapping keeps the lines of its keys
        return from_dict(cls, values, where)


def apply_preset(model: dict, task: object, where: str) -> None:
    """Fill `model` with the settings its `preset` fixes; one it sets otherwise, or a task the preset's
    architecture cannot do, is an error."""
    preset = model["preset"]
    if not isinstance(preset, str) or preset not in PRESETS:
        raise AttnkitError(
            f"{located(where, model, 'preset')}: model.preset: {preset!r} is not one of {', '.join(PRESETS)}"
        )
    arch = PRESETS[preset]["arch"]
    if task in ARCH_OF_TASK and ARCH_OF_TASK[task] != arch:
        fitting = [name for name, settings in PRESETS.items() if settings["arch"] == ARCH_OF_TASK[task]]
        raise AttnkitError(
            f"{located(where, model, 'preset')}: model.preset: {preset} is {_article(arch)} {arch} and task {task} "
            f"needs {_article(ARCH_OF_TASK[task])} {ARCH_OF_TASK[task]} (presets for it: {', '.join(fitting)})"
        )
    for key, needed in PRESETS[preset].items():
        model.setdefault(key, needed[0] if isinstance(needed, tuple) else needed)
    differences = preset_differences(preset, model)
    if differences:
        key, allowed = next(iter(differences.items()))
        wanted = f"one of {', '.join(map(repr, allowed))}" if len(allowed) > 1 else repr(allowed[0])
        raise AttnkitError(
            f"{located(where, model, key)}: model.{key}: {model[key]!r} contradicts model.preset {preset}, "
            f"which needs {wanted}"
        )


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def preset_differences(preset: str, settings: dict) -> dict[str, tuple]:
    """The settings that differ from what `preset` fixes, each with the values the preset allows."""
    differences = {}
    for key, needed in PRESETS[preset].items():
        allowed = needed if isinstance(needed, tuple) else (needed,)
        if key in settings and settings[key] not in allowed:
            differences[key] = allowed
    return differences


def read_yaml(path: Path) -> object:
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise AttnkitError(f"{path}{line}: invalid YAML ({problem})") from None


def apply_override(values: dict, override: str) -> None:
    """Set "train.lr=3e-4" in nested `values`; the value is read as YAML (numbers, true/false, null, text)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise AttnkitError(f"--set {override}: expected SECTION.KEY=VALUE, e.g. train.lr=3e-4")
    *sections, name = key.split(".")
    target = values
    for section in sections:
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise AttnkitError(f"--set {override}: {section} is not a section")
    try:
        target[name] = yaml.load(text, Loader=_Loader) if text else ""
    except yaml.YAMLError:  # not YAML ("[1, 2"): the text itself, which the setting's type check then judges
        target[name] = text


class _Loader(yaml.SafeLoader):
    """YAML as people write it: PyYAML alone reads 3e-4 as text, since YAML 1.1 wants 3.0e-4. Its mappings
    remember the line of each key, for errors that say where, and a key given twice is an error, not the last
    one silently winning."""


class Located(dict):
    """A mapping read from YAML, with the line (from 1) of each of its keys."""

    lines: dict

    def __deepcopy__(self, memo: dict) -> Located:
        copied = Located(copy.deepcopy(dict(self), memo))
        copied.lines = dict(self.lines)
        return copied


def _located_mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    keys = [(loader.construct_object(key, deep=True), key) for key, _ in node.value]
    seen: set = set()
    for name, key in keys:
        if not isinstance(name, typing.Hashable):
            continue  # construct_mapping below refuses it
        if name in seen:
            raise yaml.constructor.ConstructorError(None, None, f"{name!r} is given twice", key.start_mark)
        seen.add(name)
    mapping = Located(loader.construct_mapping(node, deep=True))
    mapping.lines = {name: key.start_mark.line + 1 for name, key in keys if isinstance(name, typing.Hashable)}
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _located_mapping)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+)$"),
    list("-+0123456789."),
)


T = typing.TypeVar("T")


def from_dict(cls: type[T], values: object, where: str, prefix: str = "") -> T:
    """Build dataclass `cls` (nested ones too) from parsed JSON/YAML. Errors read "WHERE: PREFIX.KEY: problem",
    e.g. "run.yaml: train.lr: expected float, got 'fast'"."""
    if not isinstance(values, dict):
        raise AttnkitError(f"{where}: {prefix or 'config'}: expected a mapping of fields, got {type(values).__name__}")
    unknown = _unknown_keys(cls, values, prefix)
    if unknown:
        names = [name for name, _ in unknown]
        more = "" if all("did you mean" in name for name in names) else "; docs/configuration.md lists every setting"
        line = f":{unknown[0][1]}" if unknown[0][1] is not None else ""
        raise AttnkitError(f"{where}{line}: unknown setting{'s' if len(names) > 1 else ''}: {', '.join(names)}{more}")
    hints = typing.get_type_hints(cls)
    read = values
    values = dict(values)
    for key, value in values.items():
        if isinstance(value, os.PathLike) and value_matches("", hints[key]):  # paths as pathlib.Path from Python
            value = values[key] = os.fspath(value)
        if dataclasses.is_dataclass(hints[key]):
            values[key] = from_dict(hints[key], value if value is not None else {}, where, f"{prefix}{key}.")
        elif not value_matches(value, hints[key]):
            expected = describe_type(hints[key])
            raise AttnkitError(f"{located(where, read, key)}: {prefix}{key}: expected {expected}, got {value!r}")
    try:
        return cls(**values)
    except AttnkitError as error:  # from __post_init__, whose messages begin with the setting: "train.lr must be..."
        key = str(error).split(" ", 1)[0].removeprefix(prefix)
        raise AttnkitError(f"{located(where, read, key)}: {error}") from None


def located(where: str, mapping: object, key: object) -> str:
    """`where` and the line of `key` in `mapping` if it was read from a YAML file: "run.yaml:7", else "run.yaml"."""
    line = getattr(mapping, "lines", {}).get(key)
    return f"{where}:{line}" if line is not None else where


def _unknown_keys(cls: type, values: dict, prefix: str) -> list[tuple[str, int | None]]:
    """Every key of `values`, and of the sections in it, that `cls` lacks, each with a did-you-mean, and its line
    in the YAML file (None for a key that came from elsewhere)."""
    hints = typing.get_type_hints(cls)
    known = sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    unknown = []
    lines = getattr(values, "lines", {})
    for key, value in values.items():
        if key not in known:
            unknown.append((_did_you_mean(str(key), known, prefix), lines.get(key)))
        elif dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            unknown += _unknown_keys(hints[key], value, f"{prefix}{key}.")
    return unknown


def _did_you_mean(key: str, known: list[str], prefix: str) -> str:
    """`prefix.key` with the closest known name (by difflib, or by initials as for lr), e.g.
    "model.layers (did you mean model.num_layers?)"."""
    initials = "".join(word[:1] for word in key.split("_"))
    close = difflib.get_close_matches(key, known, n=1) or [name for name in known if "_" in key and name == initials]
    return f"{prefix}{key}" + (f" (did you mean {prefix}{close[0]}?)" if close else "")


def to_dict(config: object) -> dict:
    return dataclasses.asdict(config)  # type: ignore[call-overload]


def value_matches(value: object, annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:  # JSON writes 1.0 as 1; YAML reads .nan and .inf, which no setting means
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(value_matches(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(annotation)
        return isinstance(value, dict) and all(
            value_matches(k, key) and value_matches(v, item) for k, v in value.items()
        )
    return isinstance(value, annotation)  # type: ignore[arg-type]


def describe_type(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if annotation is float:
        return "a finite float"
    return getattr(annotation, "__name__", str(annotation))
