"""BERT (MiniLM too): an encoder, with BertForSequenceClassification and BertForTokenClassification as heads; its
embedding and layer rules serve the BERT-shaped families too (RoBERTa, XLM-R, ELECTRA)."""

from __future__ import annotations

import torch
from torch import Tensor

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.interop.hf.family import ACTIVATIONS, Convert, Family, Field, Head, Rule, concat, copy, linear, norm


class Bert(Family):
    model_type = "bert"
    architecture = "BertModel"
    preset = dict(
        arch="encoder",
        norm="layernorm",
        norm_first=False,
        positions="learned",
        embedding_norm=True,
        scale_embeddings=False,
        bias=True,
        attention_scale=None,
        activation=("gelu", "gelu_tanh", "relu", "silu"),
        segments=(2, 0),  # token types: sentence A and B (a model without them exports with zero ones)
        embedding_dim=None,
    )
    prefixes = ("", "bert.")
    fields = (
        Field("vocab_size", "vocab_size"),
        Field("dim", "hidden_size"),
        Field("num_heads", "num_attention_heads"),
        Field("ff_dim", "intermediate_size"),
        Field("num_layers", "num_hidden_layers"),
        Field("dropout", "hidden_dropout_prob", 0.1),
        Field("attention_dropout", "attention_probs_dropout_prob", 0.1),
        Field("activation", "hidden_act", "gelu", ACTIVATIONS),
        Field("norm_eps", "layer_norm_eps", 1e-12),
        Field("max_positions", "max_position_embeddings", 512),
        Field("pad_id", "pad_token_id", 0, Convert(lambda pad: pad or 0)),  # null too
        # a model without token types writes BERT's two, zero (attnkit folds type 0 into the positions)
        Field("segments", "type_vocab_size", 2, Convert(lambda types: types, lambda segments: segments or 2)),
    )
    constants = {"position_embedding_type": "absolute"}
    pooler = linear("pooler", "pooler.dense")  # BertModel's pooler <-> attnkit's Classifier.pooler
    classifier = frozenset({"classifier.weight", "classifier.bias"})
    heads = {
        "sequence": Head(
            "BertForSequenceClassification",
            "bert.",
            [*pooler, *linear("head", "classifier")],
            classifier,
            pooling="pooler",
        ),
        "token": Head("BertForTokenClassification", "bert.", linear("head", "classifier"), classifier),
    }

    def config(self, hf: dict) -> ModelConfig:
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise AttnkitError(f"position_embedding_type {hf['position_embedding_type']!r} is not supported")
        return super().config(hf)

    def rules(self, config: ModelConfig) -> list[Rule]:
        return [*embedding_rules(config), *[rule for i in range(config.num_layers) for rule in layer_rules(config, i)]]


def embedding_rules(config: ModelConfig, positions_offset: int = 0, types: int = 2) -> list[Rule]:
    """BERT's embeddings (RoBERTa's and ELECTRA's too): words, positions (RoBERTa's start `positions_offset` rows
    in), token types, their norm. A model of one segment holds type 0 in its positions, and exports `types` zero
    token types."""
    rules = [
        copy("embedding.weight", "embeddings.word_embeddings.weight"),
        *norm("embed_norm", "embeddings.LayerNorm"),
    ]
    positions, token_types = "embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight"
    if config.segments:
        return [*rules, offset_positions(positions, positions_offset), copy("segments.weight", token_types)]

    def folded(t: list[Tensor]) -> Tensor:
        return t[0][positions_offset:] + t[1][0]

    def unfolded(ours: Tensor) -> list[Tensor]:
        return [
            torch.cat([ours.new_zeros(positions_offset, ours.shape[1]), ours]),
            ours.new_zeros(types, ours.shape[1]),
        ]

    return [*rules, Rule("positions.table.weight", (positions, token_types), folded, unfolded)]


def offset_positions(theirs: str, offset: int, ours: str = "positions.table.weight") -> Rule:
    """A learned position table whose first `offset` rows no token reads (RoBERTa's and MPNet's count from
    padding_idx + 1): attnkit keeps the rest, and export writes zeros in front."""

    def to_theirs(table: Tensor) -> list[Tensor]:
        return [torch.cat([table.new_zeros(offset, table.shape[1]), table])]

    return Rule(ours, (theirs,), lambda t: t[0][offset:], to_theirs)


def layer_rules(config: ModelConfig, i: int, theirs: str = "encoder.layer") -> list[Rule]:
    """Layer `i` of a BERT-shaped encoder (BERT, RoBERTa, ELECTRA) whose layers sit under `theirs`."""
    ours, theirs = f"layers.{i}", f"{theirs}.{i}"
    return [
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
