"""BERT (MiniLM too): an encoder, with BertForSequenceClassification and BertForTokenClassification as heads."""

from __future__ import annotations

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
        rules = [
            copy("embedding.weight", "embeddings.word_embeddings.weight"),
            *norm("embed_norm", "embeddings.LayerNorm"),
        ]
        positions, types = "embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight"
        if config.segments:
            rules += [copy("positions.table.weight", positions), copy("segments.weight", types)]
        else:  # a model of one segment holds BERT's type 0 in its positions, and exports zero types
            fold = Rule("positions.table.weight", (positions, types), lambda t: t[0] + t[1][0], _unfolded)
            rules.append(fold)
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


def _unfolded(positions: Tensor) -> list[Tensor]:
    return [positions, positions.new_zeros(2, positions.shape[1])]
