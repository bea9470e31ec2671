"""DistilBERT: BERT's post-norm encoder without token types or pooler, under names of its own, with
DistilBertForSequenceClassification (a dense layer and ReLU on [CLS]) and DistilBertForTokenClassification."""

from __future__ import annotations

from attnkit.config import ModelConfig
from attnkit.interop.hf.family import ACTIVATIONS, Family, Field, Head, Rule, concat, copy, linear, norm


class DistilBert(Family):
    model_type = "distilbert"
    architecture = "DistilBertModel"
    preset = dict(
        arch="encoder",
        norm="layernorm",
        norm_eps=1e-12,  # fixed in DistilBERT's code, not in its config.json
        norm_first=False,
        positions="learned",
        embedding_norm=True,
        embedding_dim=None,
        scale_embeddings=False,
        bias=True,
        attention_scale=None,
        activation=("gelu", "relu"),
        segments=0,
    )
    prefixes = ("", "distilbert.")
    fields = (
        Field("vocab_size", "vocab_size"),
        Field("dim", "dim"),
        Field("num_heads", "n_heads"),
        Field("ff_dim", "hidden_dim"),
        Field("num_layers", "n_layers"),
        Field("dropout", "dropout", 0.1),
        Field("attention_dropout", "attention_dropout", 0.1),
        Field("activation", "activation", "gelu", ACTIVATIONS),
        Field("max_positions", "max_position_embeddings", 512),
        Field("pad_id", "pad_token_id", 0),
    )
    # sinusoidal_pos_embds: true only fills the table at initialization; the weights hold it either way
    constants = {"sinusoidal_pos_embds": False}
    classifier = frozenset(
        f"{layer}.{name}" for layer in ("pre_classifier", "classifier") for name in ("weight", "bias")
    )
    heads = {
        "sequence": Head(
            "DistilBertForSequenceClassification",
            "distilbert.",
            [*linear("pooler", "pre_classifier"), *linear("head", "classifier")],
            classifier,
            pooling="pooler_relu",
        ),
        "token": Head(
            "DistilBertForTokenClassification",
            "distilbert.",
            linear("head", "classifier"),
            frozenset({"classifier.weight", "classifier.bias"}),
        ),
    }

    def rules(self, config: ModelConfig) -> list[Rule]:
        rules = [
            copy("embedding.weight", "embeddings.word_embeddings.weight"),
            copy("positions.table.weight", "embeddings.position_embeddings.weight"),
            *norm("embed_norm", "embeddings.LayerNorm"),
        ]
        for i in range(config.num_layers):
            ours, theirs = f"layers.{i}", f"transformer.layer.{i}"
            rules += [
                *[
                    concat(f"{ours}.self_attn.qkv_proj.{p}", *(f"{theirs}.attention.{n}_lin.{p}" for n in "qkv"))
                    for p in ("weight", "bias")
                ],
                *linear(f"{ours}.self_attn.out_proj", f"{theirs}.attention.out_lin"),
                *norm(f"{ours}.self_attn_norm", f"{theirs}.sa_layer_norm"),
                *linear(f"{ours}.ff.in_proj", f"{theirs}.ffn.lin1"),
                *linear(f"{ours}.ff.out_proj", f"{theirs}.ffn.lin2"),
                *norm(f"{ours}.ff_norm", f"{theirs}.output_layer_norm"),
            ]
        return rules
