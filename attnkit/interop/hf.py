"""Hugging Face checkpoints in and out, from files only (no hub): BERT (MiniLM too), GPT-2, BART, Marian, T5.

A family is its config translation plus a list of weight rules; each rule names an attnkit tensor, the Hugging
Face tensors it comes from, and how to go each way (copy, concatenate Q/K/V, transpose GPT-2's Conv1D, ...).
Import and export read the same rules, so they cannot drift apart; task heads (BERT's sequence and token
classifiers) are rules of their own. The settings each family fixes are config.PRESETS. transformers is not
needed here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from tokenizers import processors
from torch import Tensor

from attnkit.config import ModelConfig, preset_differences
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


def concat(ours: str, *theirs: str) -> Rule:
    """Separate Q, K, V (or K, V) projections <-> attnkit's fused one."""
    return Rule(ours, theirs, lambda t: torch.cat(t, dim=0), lambda t: list(t.chunk(len(theirs), dim=0)))


def transposed(ours: str, theirs: str) -> Rule:
    """GPT-2's Conv1D stores (in, out); nn.Linear stores (out, in)."""
    return Rule(ours, (theirs,), lambda t: t[0].t().contiguous(), lambda t: [t.t().contiguous()])


def offset_positions(ours: str, theirs: str, offset: int) -> Rule:
    """BART's learned positions start at row `offset`."""
    return Rule(ours, (theirs,), lambda t: t[0][offset:], lambda t: [torch.cat([t.new_zeros(offset, t.shape[1]), t])])


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
    config: dict = field(default_factory=dict)  # config.json fields of the class
    pooling: str | None = None  # classify: the Classifier pooling that the class computes


# ---------------------------------------------------------------------------------------------------- families


class Family:
    """How one Hugging Face model family maps to attnkit."""

    model_type = ""
    # where the rules' tensor names sit in the family's model classes: the first is what export writes
    # (BertModel, GPT2LMHeadModel, BartForConditionalGeneration, ...); names in `top_level` sit outside it
    prefixes: tuple[str, ...] = ("",)
    top_level: frozenset[str] = frozenset()

    def config(self, hf: dict) -> ModelConfig:
        raise NotImplementedError

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        raise NotImplementedError

    def rules(self, config: ModelConfig) -> list[Rule]:
        raise NotImplementedError

    heads: dict[str, Head] = {}  # task name -> the family's model class for it, when it is not the plain model

    def differences(self, config: ModelConfig) -> list[str]:
        """What `config` must change to be written as this family (its settings in PRESETS); empty if nothing."""
        differences = preset_differences(self.model_type, dataclasses.asdict(config))
        return [_needs(key, allowed) for key, allowed in differences.items()]


class Bert(Family):
    model_type = "bert"
    prefixes = ("", "bert.")
    pooler = linear("pooler", "pooler.dense")  # BertModel's pooler <-> attnkit's Classifier.pooler
    classifier = frozenset({"classifier.weight", "classifier.bias"})
    heads = {
        "classify": Head(
            "BertForSequenceClassification",
            "bert.",
            [*pooler, *linear("head", "classifier")],
            classifier,
            {"problem_type": "single_label_classification"},
            pooling="pooler",
        ),
        "tag": Head("BertForTokenClassification", "bert.", linear("head", "classifier"), classifier),
    }

    def config(self, hf: dict) -> ModelConfig:
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise AttnkitError(f"position_embedding_type {hf['position_embedding_type']!r} is not supported")
        return ModelConfig(
            arch="encoder",
            vocab_size=hf["vocab_size"],
            dim=hf["hidden_size"],
            num_heads=hf["num_attention_heads"],
            ff_dim=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            dropout=hf.get("hidden_dropout_prob", 0.1),
            attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
            activation=_activation(hf.get("hidden_act", "gelu")),
            norm_eps=hf.get("layer_norm_eps", 1e-12),
            norm_first=False,
            positions="learned",
            max_positions=hf.get("max_position_embeddings", 512),
            scale_embeddings=False,
            embedding_norm=True,
            pad_id=hf.get("pad_token_id") or 0,
            preset="bert",
        )

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        return {
            "model_type": "bert",
            "architectures": ["BertModel"],
            "vocab_size": config.vocab_size,
            "hidden_size": config.dim,
            "num_attention_heads": config.num_heads,
            "intermediate_size": config.ff_dim,
            "num_hidden_layers": config.num_layers,
            "hidden_act": _hf_activation(config.activation),
            "hidden_dropout_prob": config.dropout,
            "attention_probs_dropout_prob": config.attention_dropout,
            "layer_norm_eps": config.norm_eps,
            "max_position_embeddings": config.max_positions,
            "type_vocab_size": 2,
            "pad_token_id": config.pad_id,
            "position_embedding_type": "absolute",
        }

    def rules(self, config: ModelConfig) -> list[Rule]:
        # BERT adds a token-type embedding; attnkit has one segment, so type 0 is folded into the positions
        rules = [
            copy("embedding.weight", "embeddings.word_embeddings.weight"),
            Rule(
                "positions.table.weight",
                ("embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight"),
                lambda t: t[0] + t[1][0],
                lambda t: [t, t.new_zeros(2, t.shape[1])],
            ),
            *norm("embed_norm", "embeddings.LayerNorm"),
        ]
        for i in range(config.num_layers):
            ours, theirs = f"layers.{i}", f"encoder.layer.{i}"
            rules += [
                *[
                    concat(
                        f"{ours}.self_attn.qkv_proj.{p}",
                        *(f"{theirs}.attention.self.{n}.{p}" for n in ("query", "key", "value")),
                    )
                    for p in ("weight", "bias")
                ],
                *linear(f"{ours}.self_attn.out_proj", f"{theirs}.attention.output.dense"),
                *norm(f"{ours}.self_attn_norm", f"{theirs}.attention.output.LayerNorm"),
                *linear(f"{ours}.ff.in_proj", f"{theirs}.intermediate.dense"),
                *linear(f"{ours}.ff.out_proj", f"{theirs}.output.dense"),
                *norm(f"{ours}.ff_norm", f"{theirs}.output.LayerNorm"),
            ]
        return rules


class GPT2(Family):
    model_type = "gpt2"
    prefixes = ("transformer.", "")

    def config(self, hf: dict) -> ModelConfig:
        dim = hf["n_embd"]
        return ModelConfig(
            arch="decoder",
            vocab_size=hf["vocab_size"],
            dim=dim,
            num_heads=hf["n_head"],
            ff_dim=hf.get("n_inner") or 4 * dim,
            num_layers=hf["n_layer"],
            dropout=hf.get("resid_pdrop", 0.1),
            attention_dropout=hf.get("attn_pdrop", 0.1),
            activation=_activation(hf.get("activation_function", "gelu_new")),
            norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            norm_first=True,
            positions="learned",
            max_positions=hf.get("n_positions", 1024),
            scale_embeddings=False,
            tie_output=True,
            output_scale=1.0,
            pad_id=hf.get("pad_token_id") or hf.get("eos_token_id") or 0,
            preset="gpt2",
        )

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        return {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "vocab_size": config.vocab_size,
            "n_embd": config.dim,
            "n_head": config.num_heads,
            "n_inner": config.ff_dim,
            "n_layer": config.num_layers,
            "n_positions": config.max_positions,
            "activation_function": _hf_activation(config.activation),
            "resid_pdrop": config.dropout,
            "embd_pdrop": config.dropout,
            "attn_pdrop": config.attention_dropout,
            "layer_norm_epsilon": config.norm_eps,
            "bos_token_id": special["bos"],
            "eos_token_id": special["eos"],
            "tie_word_embeddings": True,
        }

    def rules(self, config: ModelConfig) -> list[Rule]:
        rules = [copy("embedding.weight", "wte.weight"), copy("positions.table.weight", "wpe.weight")]
        for i in range(config.num_layers):
            ours, theirs = f"layers.{i}", f"h.{i}"
            rules += [
                *norm(f"{ours}.self_attn_norm", f"{theirs}.ln_1"),
                transposed(f"{ours}.self_attn.qkv_proj.weight", f"{theirs}.attn.c_attn.weight"),
                copy(f"{ours}.self_attn.qkv_proj.bias", f"{theirs}.attn.c_attn.bias"),
                transposed(f"{ours}.self_attn.out_proj.weight", f"{theirs}.attn.c_proj.weight"),
                copy(f"{ours}.self_attn.out_proj.bias", f"{theirs}.attn.c_proj.bias"),
                *norm(f"{ours}.ff_norm", f"{theirs}.ln_2"),
                transposed(f"{ours}.ff.in_proj.weight", f"{theirs}.mlp.c_fc.weight"),
                copy(f"{ours}.ff.in_proj.bias", f"{theirs}.mlp.c_fc.bias"),
                transposed(f"{ours}.ff.out_proj.weight", f"{theirs}.mlp.c_proj.weight"),
                copy(f"{ours}.ff.out_proj.bias", f"{theirs}.mlp.c_proj.bias"),
            ]
        return rules + norm("final_norm", "ln_f")


class Bart(Family):
    """BART, and Marian (the same layout with sinusoidal positions and no embedding norm)."""

    model_type = "bart"
    prefixes = ("model.", "")
    top_level = frozenset({"final_logits_bias"})

    def config(self, hf: dict) -> ModelConfig:
        return ModelConfig(
            arch="encoder-decoder",
            vocab_size=hf["vocab_size"],
            dim=hf["d_model"],
            num_heads=hf["encoder_attention_heads"],
            ff_dim=hf["encoder_ffn_dim"],
            num_layers=hf["encoder_layers"],
            num_decoder_layers=hf["decoder_layers"],
            dropout=hf.get("dropout", 0.1),
            attention_dropout=hf.get("attention_dropout", 0.0),
            activation=_activation(hf["activation_function"]),
            norm_eps=1e-5,
            norm_first=False,
            positions="learned",
            max_positions=hf["max_position_embeddings"],
            scale_embeddings=bool(hf.get("scale_embedding", False)),
            embedding_norm=True,
            share_embeddings=True,
            tie_output=True,
            output_bias=True,
            output_scale=1.0,
            pad_id=hf.get("pad_token_id", 1),
            decoder_start_id=hf.get("decoder_start_token_id", 2),
            preset=self.model_type,
        )

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        return {
            "model_type": self.model_type,
            "architectures": [self.architecture],
            "vocab_size": config.vocab_size,
            "d_model": config.dim,
            "encoder_attention_heads": config.num_heads,
            "decoder_attention_heads": config.num_heads,
            "encoder_ffn_dim": config.ff_dim,
            "decoder_ffn_dim": config.ff_dim,
            "encoder_layers": config.num_layers,
            "decoder_layers": config.decoder_layers,
            "activation_function": _hf_activation(config.activation),
            "dropout": config.dropout,
            "attention_dropout": config.attention_dropout,
            "activation_dropout": 0.0,
            "max_position_embeddings": config.max_positions,
            "scale_embedding": config.scale_embeddings,
            "pad_token_id": config.pad_id,
            "bos_token_id": special["bos"],
            "eos_token_id": special["eos"],
            "decoder_start_token_id": special["start"],
            "forced_eos_token_id": special["eos"],
            "tie_word_embeddings": True,
            "share_encoder_decoder_embeddings": True,
            "is_encoder_decoder": True,
        }

    architecture = "BartForConditionalGeneration"

    def positions(self, stack: str) -> list[Rule]:
        return [offset_positions(f"{stack}.positions.table.weight", f"{stack}.embed_positions.weight", 2)]

    def embedding_norm(self, stack: str) -> list[Rule]:
        return norm(f"{stack}.embed_norm", f"{stack}.layernorm_embedding")

    def rules(self, config: ModelConfig) -> list[Rule]:
        rules = [
            copy("encoder.embedding.weight", "shared.weight"),
            Rule("decoder.output.bias", ("final_logits_bias",), lambda t: t[0][0], lambda t: [t[None].clone()]),
        ]
        for stack, count in (("encoder", config.num_layers), ("decoder", config.decoder_layers)):
            rules += self.positions(stack) + self.embedding_norm(stack)
            for i in range(count):
                ours, theirs = f"{stack}.layers.{i}", f"{stack}.layers.{i}"
                rules += _bart_attention(f"{ours}.self_attn", f"{theirs}.self_attn", cross=False)
                rules += norm(f"{ours}.self_attn_norm", f"{theirs}.self_attn_layer_norm")
                if stack == "decoder":
                    rules += _bart_attention(f"{ours}.cross_attn", f"{theirs}.encoder_attn", cross=True)
                    rules += norm(f"{ours}.cross_attn_norm", f"{theirs}.encoder_attn_layer_norm")
                rules += linear(f"{ours}.ff.in_proj", f"{theirs}.fc1") + linear(f"{ours}.ff.out_proj", f"{theirs}.fc2")
                rules += norm(f"{ours}.ff_norm", f"{theirs}.final_layer_norm")
        return rules


class Marian(Bart):
    model_type = "marian"
    architecture = "MarianMTModel"

    def config(self, hf: dict) -> ModelConfig:
        if not hf.get("share_encoder_decoder_embeddings", True):
            raise AttnkitError("Marian models with separate source and target vocabularies are not supported")
        config = super().config(hf)
        config.positions, config.embedding_norm = "sinusoidal", False
        config.scale_embeddings = bool(hf.get("scale_embedding", True))
        config.decoder_start_id = hf.get("decoder_start_token_id", config.pad_id)
        return config

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        return {**super().hf_config(config, special), "decoder_vocab_size": config.vocab_size}

    def positions(self, stack: str) -> list[Rule]:
        return []  # sinusoids, computed (transformers recomputes its table too)

    def embedding_norm(self, stack: str) -> list[Rule]:
        return []


class T5(Family):
    model_type = "t5"
    top_level = frozenset({"lm_head.weight"})

    def differences(self, config: ModelConfig) -> list[str]:
        scaled = config.output_scale in (1.0, config.dim**-0.5)  # T5 scales its output by dim^-0.5, v1.1 not
        return super().differences(config) + ([] if scaled else ["output_scale in (1.0, dim ** -0.5)"])

    def config(self, hf: dict) -> ModelConfig:
        if hf["d_kv"] * hf["num_heads"] != hf["d_model"]:
            raise AttnkitError(
                f"d_kv x num_heads ({hf['d_kv']} x {hf['num_heads']}) must equal d_model ({hf['d_model']})"
            )
        projection = hf.get("feed_forward_proj", "relu")
        activations = {"relu": "relu", "gated-gelu": "geglu_tanh", "gated-silu": "swiglu", "gelu": "gelu"}
        if projection not in activations:
            raise AttnkitError(f"feed_forward_proj {projection!r} is not supported")
        tied = hf.get("tie_word_embeddings", True)
        # T5 scales the decoder output by d_model^-0.5 before the output layer, v1.1 does not; configs before
        # transformers 5 said so with tie_word_embeddings, later ones with scale_decoder_outputs
        scaled = hf.get("scale_decoder_outputs", tied)
        return ModelConfig(
            arch="encoder-decoder",
            vocab_size=hf["vocab_size"],
            dim=hf["d_model"],
            num_heads=hf["num_heads"],
            ff_dim=hf["d_ff"],
            num_layers=hf["num_layers"],
            num_decoder_layers=hf.get("num_decoder_layers"),
            dropout=hf.get("dropout_rate", 0.1),
            activation=activations[projection],
            norm="rmsnorm",
            norm_eps=hf.get("layer_norm_epsilon", 1e-6),
            norm_first=True,
            positions="relative",
            relative_buckets=hf.get("relative_attention_num_buckets", 32),
            relative_max_distance=hf.get("relative_attention_max_distance", 128),
            scale_embeddings=False,
            bias=False,
            attention_scale=1.0,
            share_embeddings=True,
            tie_output=tied,
            output_scale=hf["d_model"] ** -0.5 if scaled else 1.0,
            pad_id=hf.get("pad_token_id", 0),
            decoder_start_id=hf.get("decoder_start_token_id", 0),
            preset="t5",
        )

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        projection = {"relu": "relu", "geglu_tanh": "gated-gelu", "swiglu": "gated-silu", "gelu": "gelu"}
        return {
            "model_type": "t5",
            "architectures": ["T5ForConditionalGeneration"],
            "vocab_size": config.vocab_size,
            "d_model": config.dim,
            "d_kv": config.head_dim,
            "num_heads": config.num_heads,
            "d_ff": config.ff_dim,
            "num_layers": config.num_layers,
            "num_decoder_layers": config.decoder_layers,
            "feed_forward_proj": projection[config.activation],
            "dropout_rate": config.dropout,
            "layer_norm_epsilon": config.norm_eps,
            "relative_attention_num_buckets": config.relative_buckets,
            "relative_attention_max_distance": config.relative_max_distance,
            "tie_word_embeddings": config.tie_output,
            "scale_decoder_outputs": config.output_scale != 1.0,
            "pad_token_id": config.pad_id,
            "eos_token_id": special["eos"],
            "decoder_start_token_id": special["start"],
            "is_encoder_decoder": True,
        }

    def rules(self, config: ModelConfig) -> list[Rule]:
        rules = [copy("encoder.embedding.weight", "shared.weight")]
        if not config.tie_output:
            rules.append(copy("decoder.output.weight", "lm_head.weight"))
        gated = config.activation in ("geglu_tanh", "swiglu")
        for stack, count in (("encoder", config.num_layers), ("decoder", config.decoder_layers)):
            rules.append(
                copy(
                    f"{stack}.positions.bias.weight",
                    f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                )
            )
            for i in range(count):
                ours, theirs = f"{stack}.layers.{i}", f"{stack}.block.{i}.layer"
                rules += _t5_attention(f"{ours}.self_attn", f"{theirs}.0.SelfAttention", cross=False)
                rules += norm(f"{ours}.self_attn_norm", f"{theirs}.0.layer_norm", bias=False)
                ff = 1
                if stack == "decoder":
                    rules += _t5_attention(f"{ours}.cross_attn", f"{theirs}.1.EncDecAttention", cross=True)
                    rules += norm(f"{ours}.cross_attn_norm", f"{theirs}.1.layer_norm", bias=False)
                    ff = 2
                dense = f"{theirs}.{ff}.DenseReluDense"
                if gated:
                    rules.append(concat(f"{ours}.ff.in_proj.weight", f"{dense}.wi_0.weight", f"{dense}.wi_1.weight"))
                else:
                    rules.append(copy(f"{ours}.ff.in_proj.weight", f"{dense}.wi.weight"))
                rules.append(copy(f"{ours}.ff.out_proj.weight", f"{dense}.wo.weight"))
                rules += norm(f"{ours}.ff_norm", f"{theirs}.{ff}.layer_norm", bias=False)
            rules += norm(f"{stack}.final_norm", f"{stack}.final_layer_norm", bias=False)
        return rules


def _bart_attention(ours: str, theirs: str, cross: bool) -> list[Rule]:
    if cross:
        projections = linear(f"{ours}.q_proj", f"{theirs}.q_proj") + [
            concat(f"{ours}.kv_proj.{p}", f"{theirs}.k_proj.{p}", f"{theirs}.v_proj.{p}") for p in ("weight", "bias")
        ]
    else:
        projections = [
            concat(f"{ours}.qkv_proj.{p}", *(f"{theirs}.{n}_proj.{p}" for n in "qkv")) for p in ("weight", "bias")
        ]
    return projections + linear(f"{ours}.out_proj", f"{theirs}.out_proj")


def _t5_attention(ours: str, theirs: str, cross: bool) -> list[Rule]:
    if cross:
        projections = [
            copy(f"{ours}.q_proj.weight", f"{theirs}.q.weight"),
            concat(f"{ours}.kv_proj.weight", f"{theirs}.k.weight", f"{theirs}.v.weight"),
        ]
    else:
        projections = [concat(f"{ours}.qkv_proj.weight", *(f"{theirs}.{n}.weight" for n in "qkv"))]
    return projections + [copy(f"{ours}.out_proj.weight", f"{theirs}.o.weight")]


HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def _needs(key: str, allowed: tuple) -> str:
    return f"{key}={allowed[0]!r}" if len(allowed) == 1 else f"{key} in ({', '.join(map(repr, allowed))})"


def _activation(name: str) -> str:
    if name not in HF_ACTIVATIONS:
        raise AttnkitError(f"activation {name!r} is not supported (supported: {', '.join(HF_ACTIVATIONS)})")
    return HF_ACTIVATIONS[name]


def _hf_activation(name: str) -> str:
    return {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}[name]


FAMILIES: dict[str, Family] = {f.model_type: f for f in (Bert(), GPT2(), Bart(), Marian(), T5())}

# ------------------------------------------------------------------------------------------------ files in, out


def is_hf_directory(path: str | os.PathLike) -> bool:
    """A directory whose config.json is a Hugging Face one (it names a model_type)."""
    try:
        data = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model_type" in data and data.get("format") != "attnkit"


def read_hf_config(path: str | os.PathLike) -> tuple[Family, ModelConfig]:
    from attnkit.files import read_json

    file = Path(path) / "config.json"
    hf = read_json(file)
    if not isinstance(hf, dict):
        raise AttnkitError(f"{file}: expected a JSON object")
    model_type = hf.get("model_type")
    if model_type not in FAMILIES:
        raise AttnkitError(f"{file}: model_type {model_type!r} is not supported (supported: {', '.join(FAMILIES)})")
    family = FAMILIES[model_type]
    try:
        return family, family.config(hf)
    except KeyError as error:
        raise AttnkitError(f"{file}: missing field {error.args[0]!r} for a {model_type} model") from None
    except AttnkitError as error:
        raise AttnkitError(f"{file}: {error}") from None


def load_hf_model(path: str | os.PathLike, trust_pickle: bool = False) -> torch.nn.Module:
    """The attnkit model with the weights of the Hugging Face checkpoint at `path`, in evaluation mode."""
    from attnkit.nn import build_model

    path = Path(path)
    family, config = read_hf_config(path)
    model = build_model(config)
    tensors, weights_file = read_hf_weights(path, trust_pickle)
    state = to_attnkit(family, config, tensors, weights_file, model.state_dict())
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {name for name in missing if _is_tied(model, name)}
    if set(missing) - tied or unexpected:
        raise AttnkitError(f"{weights_file}: incomplete weights (missing {sorted(set(missing) - tied)[:3]})")
    return model.eval()


def read_hf_weights(path: Path, trust_pickle: bool) -> tuple[Tensors, Path]:
    """All tensors of a checkpoint: model.safetensors, its sharded form, or (trusted only) pytorch_model.bin."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    try:
        if single.is_file():
            return safetensors.torch.load_file(str(single)), single
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in safetensors.torch.load_file(str(path / shard)).items()}, index
    except (safetensors.SafetensorError, OSError, ValueError, KeyError) as error:
        raise AttnkitError(f"{single if single.is_file() else index}: unreadable weights ({error})") from None
    pickled = path / "pytorch_model.bin"
    if pickled.is_file():
        if not trust_pickle:
            raise AttnkitError(
                f"{pickled}: a pickle file, which can run code when loaded; convert it to model.safetensors, or "
                "pass --trust-pickle (trust_pickle=True) if you trust where it came from"
            )
        return torch.load(pickled, map_location="cpu", weights_only=True), pickled
    raise AttnkitError(f"{path}: no weights (model.safetensors or pytorch_model.bin)")


def to_attnkit(family: Family, config: ModelConfig, tensors: Tensors, where: Path, expected: Tensors) -> Tensors:
    """Rename and reshape Hugging Face tensors to attnkit's names, checking each shape against the model."""
    rules = family.rules(config)
    probe = next(name for name in rules[0].theirs)
    prefix = next((p for p in family.prefixes if p + probe in tensors), None)
    if prefix is None:
        raise AttnkitError(f"{where}: no tensor {family.prefixes[0] + probe!r}; not a {family.model_type} checkpoint?")
    state = {}
    for rule in rules:
        names = [name if name in family.top_level else prefix + name for name in rule.theirs]
        absent = [name for name in names if name not in tensors]
        if absent:
            raise AttnkitError(f"{where}: missing tensor {absent[0]!r}")
        value = rule.to_ours([tensors[name].float() for name in names])
        if tuple(value.shape) != tuple(expected[rule.ours].shape):
            raise AttnkitError(
                f"{where}: tensor {names[0]!r} has shape {list(tensors[names[0]].shape)}, which disagrees with "
                f"config.json (attnkit {rule.ours} needs {list(expected[rule.ours].shape)})"
            )
        state[rule.ours] = value
    return state


@dataclass
class TaskExport:
    """What export needs of a trained task model besides its weights."""

    name: str  # classify, tag or seq2seq
    labels: list[str] = field(default_factory=list)  # classify, tag: the name of each output
    max_length: int | None = None  # classify, seq2seq: inputs are cut to this many tokens
    generation: dict = field(default_factory=dict)  # seq2seq: attnkit's decoding, as transformers' generation config


def export_hf(
    model: torch.nn.Module,
    tokenizer: object,
    out: str | os.PathLike,
    task: TaskExport | None = None,
    where: str = "model",
) -> str:
    """Write `model` (with `tokenizer`) as a Hugging Face checkpoint directory; returns the family's name. A task
    model becomes the family's class for the task, with its head; only an architecture a family holds is written."""
    from attnkit.files import atomic_directory, write_json

    headed = task is not None and task.name in ("classify", "tag")
    base = model.encoder if headed else model
    family = family_of(base.config, where)
    head = _head(family, model, task.name, where) if headed else None
    prefix = head.prefix if head else family.prefixes[0]
    tensors = _hf_tensors(family.rules(base.config), base.state_dict(), prefix, family.top_level)
    special = {role: getattr(tokenizer, f"{role}_id") for role in ("bos", "eos", "pad", "unk")}
    special["start"] = base.config.decoder_start_id if base.config.decoder_start_id is not None else special["bos"]
    config = {**family.hf_config(base.config, special), "torch_dtype": "float32"}
    if head is not None:
        tensors.update(_hf_tensors(head.rules, model.state_dict(), head.prefix, head.top_level))
        labels = task.labels
        config.update(architectures=[head.architecture], **head.config)
        config.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    with atomic_directory(out) as tmp:
        write_json(tmp / "config.json", config)
        safetensors.torch.save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if task is not None and task.generation:
            write_json(tmp / "generation_config.json", task.generation)
        _save_tokenizer(tokenizer, tmp, task)
    return family.model_type


def family_of(config: ModelConfig, where: str = "model") -> Family:
    """The family whose architecture `config` is; if none, an error that names the closest and how to train it."""
    differences = {name: family.differences(config) for name, family in FAMILIES.items()}
    for name, wrong in differences.items():
        if not wrong:
            return FAMILIES[name]
    closest = min(differences, key=lambda n: (any(w.startswith("arch") for w in differences[n]), len(differences[n])))
    raise AttnkitError(
        f"{where}: no Hugging Face family holds this architecture (closest: {closest}, which needs "
        f"{', '.join(differences[closest])}); train with --preset {closest} (model.preset: {closest}) to get one "
        "that exports"
    )


def _head(family: Family, model: torch.nn.Module, task: str, where: str) -> Head:
    head = family.heads.get(task)
    if head is None:
        raise AttnkitError(f"{where}: Hugging Face {family.model_type} has no model class for task {task}")
    pooling = getattr(model, "pooling", None)
    if head.pooling is not None and pooling != head.pooling:
        raise AttnkitError(
            f"{where}: a classifier with task.pooling={pooling} cannot become {head.architecture}, which pools as "
            f"task.pooling={head.pooling}; train with task.pooling: {head.pooling} (the default with --preset "
            f"{family.model_type})"
        )
    return head


def _hf_tensors(rules: list[Rule], state: Tensors, prefix: str, top_level: frozenset[str] = frozenset()) -> Tensors:
    """The Hugging Face tensors that `rules` make of attnkit's `state`, named under `prefix`."""
    tensors = {}
    for rule in rules:
        for hf_name, value in zip(rule.theirs, rule.to_theirs(state[rule.ours].detach())):
            tensors[hf_name if hf_name in top_level else prefix + hf_name] = value.contiguous().clone()
    return tensors


def read_hf_pooler(path: str | os.PathLike, trust_pickle: bool = False) -> Tensors | None:
    """The pooler of a Hugging Face BERT checkpoint as attnkit's Classifier.pooler weights; None if it has none."""
    family, _ = read_hf_config(path)
    rules = getattr(family, "pooler", None)
    if rules is None:
        return None
    tensors, _ = read_hf_weights(Path(path), trust_pickle)
    for prefix in family.prefixes:
        names = [[prefix + name for name in rule.theirs] for rule in rules]
        if all(name in tensors for group in names for name in group):
            return {
                rule.ours.removeprefix("pooler."): rule.to_ours([tensors[n].float() for n in group])
                for rule, group in zip(rules, names)
            }
    return None


def _save_tokenizer(tokenizer: object, directory: Path, task: TaskExport | None) -> None:
    """tokenizer.json and tokenizer_config.json; for a task model, tokenizer.json adds the special tokens that the
    task's inputs have, so that transformers' tokenizer(text) gives the ids attnkit gives the model."""
    from attnkit.files import write_json

    settings = _tokenizer_config(tokenizer)
    if task is None:
        tokenizer.save(directory / "tokenizer.json")
    else:
        backend = type(tokenizer.backend).from_str(tokenizer.backend.to_str())
        backend.post_processor = _template(tokenizer, task.name)
        backend.save(str(directory / "tokenizer.json"))
        if task.max_length is not None:
            settings["model_max_length"] = task.max_length
    write_json(directory / "tokenizer_config.json", settings)


def _template(tokenizer: object, task: str) -> processors.TemplateProcessing:
    """classify: <s> text </s> (Tokenizer.add_specials); tag: the words' subwords alone; seq2seq: text </s>."""
    token = tokenizer.backend.id_to_token
    before = [tokenizer.bos_id] if task == "classify" and tokenizer.bos_id is not None else []
    after = [] if task == "tag" else [tokenizer.eos_id]
    single = " ".join([*(token(i) for i in before), "$A", *(token(i) for i in after)])
    return processors.TemplateProcessing(single=single, special_tokens=[(token(i), i) for i in {*before, *after}])


def _tokenizer_config(tokenizer: object) -> dict:
    """Enough for transformers' AutoTokenizer to use tokenizer.json with the right special tokens (and to give
    the inputs every family's model takes)."""
    backend = tokenizer.backend
    names = {
        role: backend.id_to_token(getattr(tokenizer, f"{role}_id"))
        for role in ("bos", "eos", "pad", "unk", "mask")
        if getattr(tokenizer, f"{role}_id") is not None
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_input_names": ["input_ids", "attention_mask"],
        **{f"{role}_token": t for role, t in names.items()},
    }


def _is_tied(model: torch.nn.Module, name: str) -> bool:
    """True if parameter `name` is the same tensor as another one that is loaded (tied embeddings)."""
    tensor = model.state_dict(keep_vars=True)[name]
    return any(other is tensor for key, other in model.state_dict(keep_vars=True).items() if key != name)
