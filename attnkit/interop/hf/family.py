"""What a family is made of: the settings its architecture fixes (its preset), config.json fields, weight rules,
task heads, and the Family that holds them."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attnkit.config import ModelConfig, describe_type, value_matches
from attnkit.errors import AttnkitError

Tensors = dict[str, Tensor]


@dataclass
class Rule:
    """attnkit tensor `ours` <-> Hugging Face tensors `theirs`."""

    ours: str
    theirs: tuple[str, ...]
    to_ours: Callable[[list[Tensor]], Tensor]
    to_theirs: Callable[[Tensor], list[Tensor]]


def copy(ours: str, theirs: str) -> Rule:
    return Rule(ours, (theirs,), lambda t: t[0], lambda t: [t])


def concat(ours: str, *theirs: str, sizes: list[int] | None = None) -> Rule:
    """Separate Q, K, V (or K, V) projections <-> attnkit's fused one: equal parts, or parts of `sizes` rows (grouped
    heads make K and V narrower than Q)."""
    split = (lambda t: list(t.chunk(len(theirs), dim=0))) if sizes is None else (lambda t: list(t.split(sizes, 0)))
    return Rule(ours, theirs, lambda t: torch.cat(t, dim=0), split)


def linear(ours: str, theirs: str, bias: bool = True) -> list[Rule]:
    rules = [copy(f"{ours}.weight", f"{theirs}.weight")]
    return rules + [copy(f"{ours}.bias", f"{theirs}.bias")] if bias else rules


def norm(ours: str, theirs: str, bias: bool = True) -> list[Rule]:
    return linear(ours, theirs, bias)


@dataclass
class Head:
    """A task model as one of the family's classes (BertForSequenceClassification, ...): `rules` map the task
    model's own tensors, its head, to the class's; the family's tensors sit under `prefix` in it."""

    architecture: str
    prefix: str  # where the family's own tensors, and the head's outside `top_level`, sit in this class
    rules: list[Rule]
    top_level: frozenset[str] = frozenset()
    pooling: str | None = None  # a sequence head: the Classifier pooling that the class computes


def decoder_heads(name: str, prefix: str, token_layer: str) -> dict[str, Head]:
    """transformers' classifiers on the decoder `name` (GPT2, Llama, ...): the last real token's state through
    `score` (no bias) for a label per text; each token's through `token_layer` (with a bias) for a tag per token."""
    return {
        "sequence": Head(
            f"{name}ForSequenceClassification",
            prefix,
            linear("head", "score", bias=False),
            frozenset({"score.weight"}),
            pooling="last",
        ),
        "token": Head(
            f"{name}ForTokenClassification",
            prefix,
            linear("head", token_layer),
            frozenset({f"{token_layer}.weight", f"{token_layer}.bias"}),
        ),
    }


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Convert:
    """How a setting goes each way when config.json writes it otherwise than ModelConfig."""

    to_ours: Callable[[Any], Any] = _same
    to_theirs: Callable[[Any], Any] = _same


def names(table: dict[str, str], unsupported: Callable[[str], str]) -> Convert:
    """A setting that Hugging Face names its own way: `table` maps its names to attnkit's (where several name one
    value, export writes the first); a name outside it is the error `unsupported(name)`."""
    theirs = {ours: name for name, ours in reversed(table.items())}

    def to_ours(name: str) -> str:
        if name not in table:
            raise AttnkitError(unsupported(name))
        return table[name]

    return Convert(to_ours, theirs.__getitem__)


HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
ACTIVATIONS = names(
    HF_ACTIVATIONS, lambda name: f"activation {name!r} is not supported (supported: {', '.join(HF_ACTIVATIONS)})"
)


REQUIRED: Any = object()  # the default of a Field whose key config.json must have
_NOT_READ = object()  # what Field.read makes of a value that its conversion cannot take


@dataclass(frozen=True)
class Field:
    """ModelConfig field `ours` <-> config.json key `theirs` (or keys: export writes each, import reads the first).
    Import takes `default` where config.json lacks the key; without a default, the key is required."""

    ours: str
    theirs: str | tuple[str, ...]
    default: Any = REQUIRED
    convert: Convert = Convert()

    @property
    def keys(self) -> tuple[str, ...]:
        return self.theirs if isinstance(self.theirs, tuple) else (self.theirs,)

    def read(self, hf: dict) -> Any:
        """The setting, checked against the type of ModelConfig's field: "hidden_size: expected int, got '32'"."""
        key = self.keys[0]
        value = hf[key] if self.default is REQUIRED else hf.get(key, self.default)
        expected = typing.get_type_hints(ModelConfig)[self.ours]
        try:
            ours = self.convert.to_ours(value)
        except (TypeError, ValueError, KeyError):
            ours = _NOT_READ
        if not value_matches(ours, expected):
            raise AttnkitError(f"{key}: expected {describe_type(expected)}, got {value!r}")
        return ours


class Family:
    """How one Hugging Face model family maps to attnkit. Its config.json is the settings the family fixes
    (`preset`) and its `fields`, which import and export both read; its tensors are its `rules`."""

    model_type = ""
    # the model settings the family's architecture fixes; a tuple allows any of its values, the first by default.
    # `model.preset` fills them in for a model trained from scratch, and export writes a model as the family
    # whose preset it matches
    preset: dict[str, object] = {}
    architecture = ""  # the model class that export writes
    # where the rules' tensor names sit in the family's model classes: the first is what export writes
    # (BertModel, GPT2LMHeadModel, BartForConditionalGeneration, ...); names in `top_level` sit outside it
    prefixes: tuple[str, ...] = ("",)
    top_level: frozenset[str] = frozenset()
    fields: tuple[Field, ...] = ()
    tokens: dict[str, str] = {}  # config.json keys that export writes from the tokenizer: key -> bos or eos
    constants: dict[str, object] = {}  # config.json keys that export writes as they are and import does not read
    heads: dict[str, Head] = {}  # "sequence" (an output per input), "token" (per token) -> the class for it
    # the order of the special tokens in a vocabulary trained for a model of this family, where its code expects
    # one (attnkit.data.tokenizer.SPECIALS by default)
    special_tokens: list[str] | None = None
    # the settings of the decoder language models (grouped key/value heads, a head width of its own, biases on Q, K
    # and V alone, scaled rotary positions) that this family's config.json and classes hold; the others hold none
    holds: frozenset[str] = frozenset()

    def config(self, hf: dict) -> ModelConfig:
        """The ModelConfig of config.json `hf`."""
        return ModelConfig(**self.settings(hf), preset=self.model_type)

    def settings(self, hf: dict) -> dict:
        """The ModelConfig settings of config.json `hf`: what the preset fixes and what the fields read."""
        fixed = {key: value for key, value in self.preset.items() if not isinstance(value, tuple)}
        return {**fixed, **{f.ours: f.read(hf) for f in self.fields}}

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        """config.json of `config`; `special` holds the tokenizer's ids (bos, eos) and the decoder's start id."""
        # config.json spells out what ModelConfig may leave None: the decoder's depth and its first token
        values = {**dataclasses.asdict(config), "num_decoder_layers": config.decoder_layers}
        values["decoder_start_id"] = special["start"]
        return {
            "model_type": self.model_type,
            "architectures": [self.architecture],
            **{key: f.convert.to_theirs(values[f.ours]) for f in self.fields for key in f.keys},
            **{key: special[role] for key, role in self.tokens.items()},
            **self.constants,
        }

    def rules(self, config: ModelConfig) -> list[Rule]:
        raise NotImplementedError

    def held_rules(self, config: ModelConfig, state: Mapping[str, object]) -> list[Rule]:
        """The rules for the tensors of attnkit's `state`: all, but a task's decoder has no output projection."""
        return [rule for rule in self.rules(config) if rule.ours in state]

    def head_of(self, hf: dict) -> str | None:
        """Which of the family's heads ("sequence", "token") the class config.json `hf` names is; None: no head."""
        named = (hf.get("architectures") or [None])[0]
        return next((kind for kind, head in self.heads.items() if head.architecture == named), None)

    def differences(self, config: ModelConfig) -> list[str]:
        """What `config` must change to be written as this family (its preset, and what it holds); empty if nothing."""
        differences = self.preset_differences(dataclasses.asdict(config))
        return [_needs(key, allowed) for key, allowed in differences.items()] + self.unheld(config)

    def unheld(self, config: ModelConfig) -> list[str]:
        """The settings of `config` beyond the paper's attention that this family does not hold (see `holds`)."""
        plain = {
            "num_kv_heads": config.kv_heads == config.num_heads,
            "head_size": config.head_dim * config.num_heads == config.dim,
            "qkv_bias": config.has_qkv_bias == config.bias,
            "rotary_scaling": config.rotary_scaling == "none",
        }
        unheld = [name for name, ok in plain.items() if not ok and name not in self.holds]
        return [_needs(name, ("none",) if name == "rotary_scaling" else (None,)) for name in unheld]

    def preset_differences(self, settings: dict) -> dict[str, tuple]:
        """The `settings` that differ from what the preset fixes, each with the values it allows."""
        differences = {}
        for key, needed in self.preset.items():
            allowed = needed if isinstance(needed, tuple) else (needed,)
            if key in settings and settings[key] not in allowed:
                differences[key] = allowed
        return differences


def _needs(key: str, allowed: tuple) -> str:
    return f"{key}={allowed[0]!r}" if len(allowed) == 1 else f"{key} in ({', '.join(map(repr, allowed))})"
